"""Open the built manual in a real browser (headless Chromium) and check that it works.

Usage (from the repository root, after ``python -m sphinx -W docs docs/_build/html``)::

    python -m tools.check_docs [docs/_build/html] [--screenshot PATH] [--chromium PATH]

The built site is served over HTTP on 127.0.0.1 (an ephemeral port, this
process only), so that every request the browser makes is seen, and:

1. every local link of every page (``href`` and ``src`` that name no other
   host) is fetched from that server: none may answer 404, and a link to an
   anchor (``page.html#name``) must find that ``id`` in the page;
2. Chromium renders the landing page and a reference page
   (``reference/pool.html``): the DOM it builds must hold the manual's title
   and the table of contents, and the ``Pool`` class with its "Differs from
   multiprocessing" note;
3. the search index exists (``searchindex.js``) and searching works in the
   browser: ``search.html?q=Pool`` lists results once its script has run;
4. no request the browser made (style sheets, scripts, fonts, images) got
   a 404;
5. a screenshot of the landing page is saved (default
   ``docs/_build/screenshots/landing.png``).

Prints one line per check and a summary; exits 1 if a check failed, 2 if
Chromium or the build is missing.  Chromium is Debian's ``chromium``
package (``.ci/run`` installs it with apt when it is missing).  Standard
library only.
"""

from __future__ import annotations

import argparse
import functools
import html.parser
import http.server
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence, Set, Tuple

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_HTML = ROOT / "docs" / "_build" / "html"
DEFAULT_SCREENSHOT = ROOT / "docs" / "_build" / "screenshots" / "landing.png"
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
#: a page of the reference that must render, and what must be on it
REFERENCE_PAGE = "reference/pool.html"
BROWSER_TIMEOUT = 90  # seconds per Chromium run: a hang is a failure, a slow machine is not


class PageLinks(html.parser.HTMLParser):
    """The ids a page defines and the local URLs it refers to."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.ids: Set[str] = set()
        self.links: List[str] = []

    def handle_starttag(self, tag: str, attrs: List[Tuple[str, Optional[str]]]) -> None:
        for name, value in attrs:
            if value is None:
                continue
            if name == "id" or (name == "name" and tag == "a"):
                self.ids.add(value)
            elif name in ("href", "src") and is_local(value):
                self.links.append(value)


def is_local(url: str) -> bool:
    """Whether ``url`` stays on this site (no scheme, no other host, not a script or data URL)."""
    parts = urllib.parse.urlsplit(url)
    return not parts.scheme and not parts.netloc and bool(parts.path or parts.fragment)


def parse_page(path: Path) -> PageLinks:
    parser = PageLinks()
    parser.feed(path.read_text(encoding="utf-8", errors="replace"))
    return parser


class RecordingHandler(http.server.SimpleHTTPRequestHandler):
    """Serves the site and records (path, status) of every request."""

    requests: List[Tuple[str, int]]

    def log_request(self, code: object = "-", size: object = "-") -> None:
        status = int(code) if isinstance(code, int) or str(code).isdigit() else 0
        self.requests.append((self.path, status))

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the stdlib's name
        pass  # quiet: the checks report what matters


class QuietServer(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        # The browser drops connections it no longer needs (a page it has
        # finished with): not an error of the site's.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)  # type: ignore[arg-type]


class SiteServer:
    """The built site on an ephemeral port of 127.0.0.1, in a thread; a context manager."""

    def __init__(self, directory: Path) -> None:
        self.requests: List[Tuple[str, int]] = []
        handler = type("Handler", (RecordingHandler,), {"requests": self.requests})
        self._server = QuietServer(("127.0.0.1", 0), functools.partial(handler, directory=str(directory)))
        self._thread = threading.Thread(target=self._server.serve_forever, name="docs-server", daemon=True)

    @property
    def base(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/"

    def __enter__(self) -> SiteServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(10)


def check_links(directory: Path, base: str) -> Tuple[int, List[str]]:
    """Fetch every local link of every page from ``base``; return (links checked, problems)."""
    pages = sorted(directory.rglob("*.html"))
    ids_by_page: Dict[str, Set[str]] = {}
    wanted: Dict[str, Set[str]] = {}  # target URL (no fragment) -> the pages that link to it
    anchors: List[Tuple[str, str, str]] = []  # (from page, target page URL, fragment)
    for page in pages:
        rel = page.relative_to(directory).as_posix()
        page_url = urllib.parse.urljoin(base, rel)
        parsed = parse_page(page)
        ids_by_page[page_url] = parsed.ids
        for link in parsed.links:
            target = urllib.parse.urljoin(page_url, link)
            target, fragment = urllib.parse.urldefrag(target)
            wanted.setdefault(target, set()).add(rel)
            if fragment and target.endswith(".html"):
                anchors.append((rel, target, urllib.parse.unquote(fragment)))
    problems: List[str] = []
    for target, sources in sorted(wanted.items()):
        status = fetch_status(target)
        if status != 200:
            problems.append(f"{target[len(base) - 1 :]} -> {status} (linked from {', '.join(sorted(sources)[:3])})")
    for source, target, fragment in anchors:
        ids = ids_by_page.get(target)
        if ids is not None and fragment not in ids:
            problems.append(f"{source}: no id {fragment!r} in {target[len(base) - 1 :]}")
    return len(wanted), problems


def fetch_status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def find_browser(explicit: Optional[str]) -> Optional[str]:
    if explicit:
        return explicit if shutil.which(explicit) or os.path.exists(explicit) else None
    for name in BROWSERS:
        found = shutil.which(name)
        if found:
            return found
    return None


def chromium(browser: str, profiles: Path, *args: str) -> subprocess.CompletedProcess:
    """Run headless Chromium once with a profile of its own; its output as text.

    A fresh profile per run, so that no run sees what another left (Sphinx's
    search page stores the words to highlight in the browser's storage).
    """
    profile = Path(tempfile.mkdtemp(prefix="profile-", dir=profiles))
    command = [
        browser,
        "--headless",
        "--no-sandbox",  # CI runs as root, where Chromium's sandbox refuses to start
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--hide-scrollbars",
        f"--user-data-dir={profile}",
        *args,
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=BROWSER_TIMEOUT)


def dump_dom(browser: str, profile: Path, url: str, budget_ms: int = 5000) -> str:
    """The DOM of ``url`` as the browser built it, scripts run (``budget_ms`` of virtual time)."""
    return chromium(browser, profile, f"--virtual-time-budget={budget_ms}", "--dump-dom", url).stdout


def rendered_checks(browser: str, profile: Path, base: str) -> Iterator[Tuple[str, bool, str]]:
    """(check, passed, detail) for the pages rendered in the browser."""
    index = dump_dom(browser, profile, base + "index.html")
    yield (
        "index renders",
        "<title>multiprocess" in index and "Getting started" in index and "first-program.html" in index,
        f"{len(index)} characters of DOM",
    )
    reference = dump_dom(browser, profile, base + REFERENCE_PAGE)
    yield (
        f"{REFERENCE_PAGE} renders",
        'id="multiprocess.pool.Pool"' in reference and "Differs from multiprocessing" in reference,
        f"{len(reference)} characters of DOM",
    )
    search = dump_dom(browser, profile, base + "search.html?q=Pool", budget_ms=15000)
    results = search.count('<li class="kind-')
    if not results:  # Sphinx before 8 marks results without a kind
        results = search.split('<ul class="search">', 1)[-1].split("</ul>", 1)[0].count("<li")
    yield ("search finds 'Pool'", results > 0, f"{results} results")


def screenshot(browser: str, profile: Path, url: str, path: Path) -> Tuple[bool, str]:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        path.unlink()
    chromium(browser, profile, "--window-size=1280,900", "--virtual-time-budget=5000", f"--screenshot={path}", url)
    ok = path.exists() and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    return ok, f"{path} ({path.stat().st_size if path.exists() else 0} bytes)"


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.check_docs", description=__doc__.splitlines()[0])
    parser.add_argument(
        "html", nargs="?", type=Path, default=DEFAULT_HTML, help="the built site (default: %(default)s)"
    )
    parser.add_argument("--screenshot", type=Path, default=DEFAULT_SCREENSHOT, help="where to save the landing page's")
    parser.add_argument("--chromium", help="the browser to run (default: chromium on PATH)")
    args = parser.parse_args(argv)

    directory: Path = args.html.resolve()
    if not (directory / "index.html").is_file():
        print(f"check_docs: no built site at {directory} (build it with python -m sphinx -W docs {args.html})")
        return 2
    browser = find_browser(args.chromium)
    if browser is None:
        print("check_docs: Chromium not found (apt-get install chromium)")
        return 2

    results: List[Tuple[str, bool, str]] = []
    search_index = directory / "searchindex.js"
    results.append(
        (
            "search index exists",
            search_index.is_file() and search_index.read_text(encoding="utf-8")[:16].startswith("Search.setIndex("),
            f"{search_index.stat().st_size if search_index.is_file() else 0} bytes",
        )
    )
    with SiteServer(directory) as server, tempfile.TemporaryDirectory(prefix="check-docs-") as profile_dir:
        profile = Path(profile_dir)
        checked, problems = check_links(directory, server.base)
        results.append(
            ("local links resolve", not problems, f"{checked} links; " + ("; ".join(problems[:10]) or "no 404"))
        )
        served_before = len(server.requests)
        results.extend(rendered_checks(browser, profile, server.base))
        ok, detail = screenshot(browser, profile, server.base + "index.html", args.screenshot.resolve())
        results.append(("screenshot of the landing page", ok, detail))
        browser_requests = server.requests[served_before:]
        # /favicon.ico: asked for by the browser of every site, named by no page of ours.
        missing = sorted({path for path, status in browser_requests if status == 404 and path != "/favicon.ico"})
        results.append(
            (
                "browser's requests found",
                bool(browser_requests) and not missing,
                f"{len(browser_requests)} requests; " + (", ".join(missing[:10]) or "no 404"),
            )
        )

    for name, ok, detail in results:
        print(f"{'ok    ' if ok else 'FAILED'} {name}: {detail}")
    failed = [name for name, ok, _ in results if not ok]
    print(f"check_docs: {len(results) - len(failed)} passed, {len(failed)} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
