"""Wire-protocol fuzzing: ``python -m tools.fuzz [--profile long]`` (see ``__main__``)."""
