"""The README's performance headline is what the last benchmark results say (benchmarks/headline.py)."""

from __future__ import annotations

import json

from benchmarks import headline


def test_the_readme_headline_is_generated_from_the_latest_results():
    assert headline.main(["--check"]) == 0, "run: .venv/bin/python -m benchmarks.headline"


def test_every_target_appears_with_its_verdict():
    results = json.loads(headline.RESULTS.read_text())
    block = headline.render(results)
    for target in results["targets"]:
        assert f"| {target['name']} | {target['measured']} | {'met' if target['met'] else 'missed'} |" in block


def test_a_changed_result_changes_the_readme(tmp_path):
    results = json.loads(headline.RESULTS.read_text())
    results["targets"][0]["measured"] = "9.99x"
    changed = tmp_path / "latest.json"
    changed.write_text(json.dumps(results))
    readme = tmp_path / "README.md"
    readme.write_text(headline.README.read_text())
    assert headline.main(["--check", "--results", str(changed), "--readme", str(readme)]) == 1
    assert headline.main(["--results", str(changed), "--readme", str(readme)]) == 0
    assert "9.99x" in readme.read_text()
