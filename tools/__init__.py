"""Repository tools (versions, isolated-install checks); run from the repository root."""
