"""tools/check_docs.py: which links count as local, and that broken ones and missing anchors are found.

The browser half runs in CI's docs step (``.ci/run``) on the real build; these
tests serve a small site of their own, so they need neither Sphinx nor
Chromium.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tools import check_docs

pytestmark = pytest.mark.timeout(60)


@pytest.mark.parametrize(
    ("url", "local"),
    [
        ("guide/pools.html", True),
        ("../index.html#top", True),
        ("#section", True),
        ("_static/furo.css?v=1", True),
        ("https://docs.python.org/3.11/library/multiprocessing.html", False),
        ("//cdn.example/x.js", False),
        ("mailto:someone@example.org", False),
        ("javascript:void(0)", False),
        ("data:image/png;base64,AAAA", False),
    ],
)
def test_local_links(url: str, local: bool) -> None:
    assert check_docs.is_local(url) is local


def write_site(root: Path) -> None:
    (root / "guide").mkdir()
    (root / "index.html").write_text(
        '<html><body><h1 id="top">t</h1>'
        '<a href="guide/pools.html#map">map</a>'
        '<a href="guide/pools.html#nowhere">missing anchor</a>'
        '<a href="gone.html">missing page</a>'
        '<a href="https://example.org/">elsewhere</a>'
        '<img src="_static/logo.png"></body></html>'
    )
    (root / "guide" / "pools.html").write_text(
        '<html><body><h2 id="map">m</h2><a href="../index.html#top">up</a></body></html>'
    )


def test_broken_pages_and_anchors_are_reported_and_good_links_are_not(tmp_path: Path) -> None:
    write_site(tmp_path)
    with check_docs.SiteServer(tmp_path) as server:
        checked, problems = check_docs.check_links(tmp_path, server.base)
        requests = list(server.requests)
    assert checked == 4  # guide/pools.html, gone.html, _static/logo.png, index.html
    assert sorted(p.split(" ")[0] for p in problems) == ["/_static/logo.png", "/gone.html", "index.html:"]
    assert any("no id 'nowhere' in /guide/pools.html" in p for p in problems)
    assert not any("'map'" in p or "'top'" in p for p in problems)
    assert ("/gone.html", 404) in requests and ("/guide/pools.html", 200) in requests


def test_a_site_without_problems(tmp_path: Path) -> None:
    (tmp_path / "index.html").write_text('<a href="other.html#a">a</a>')
    (tmp_path / "other.html").write_text('<p id="a"><a href="index.html">back</a></p>')
    with check_docs.SiteServer(tmp_path) as server:
        assert check_docs.check_links(tmp_path, server.base) == (2, [])


def test_missing_build_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert check_docs.main([str(tmp_path)]) == 2
    assert "no built site" in capsys.readouterr().out
