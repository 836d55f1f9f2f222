"""A wheel (`pip wheel .`, not an editable install) carries the default index and tags from anywhere.

Built from a copy of the sources, installed into a fresh virtualenv outside the checkout with
`pip install --no-deps`; the heavy dependencies (torch, faiss...) come from this test
environment's site-packages through a .pth line, added after the install so that pip never
sees them. Offline: no build isolation, no index."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow


def run(*args: str | Path, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"{args}\n{result.stdout}\n{result.stderr}"
    return result


def test_wheel_carries_the_index_and_tags_outside_the_checkout(tmp_path: Path) -> None:
    src = tmp_path / "src"
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", ".*")
    for name in ("embedtag", "index"):
        shutil.copytree(REPO / name, src / name, ignore=ignore)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, src / name)
    env = {k: v for k, v in os.environ.items() if not k.startswith("EMBEDTAG_")}
    env.update(PIP_NO_INDEX="1", PIP_DISABLE_PIP_VERSION_CHECK="1", EMBEDTAG_HOME=str(tmp_path / "home"))
    run(sys.executable, "-m", "pip", "wheel", src, "--no-deps", "--no-build-isolation", "-q", "-w", tmp_path / "dist",
        cwd=tmp_path, env=env)
    (wheel,) = (tmp_path / "dist").glob("embedtag-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    shipped = {p.name for p in (REPO / "index").iterdir() if p.is_file()}
    assert {f"embedtag/data/index/{n}" for n in shipped} <= names, sorted(names)
    assert "embedtag/data/tags.json" in names and "embedtag/data/glosses.json" in names

    venv = tmp_path / "venv"
    run(sys.executable, "-m", "venv", "--without-pip", venv, cwd=tmp_path, env=env)
    python = venv / "bin" / "python"
    run(sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "-q", wheel, cwd=tmp_path, env=env)
    site = Path(run(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])",
                    cwd=tmp_path, env=env).stdout.strip())
    ours = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    (site / "zz_test_dependencies.pth").write_text("\n".join(sorted(ours)) + "\n", encoding="utf-8")

    work = tmp_path / "elsewhere"
    work.mkdir()
    where = run(python, "-c", "import embedtag, embedtag.index as i; print(embedtag.__file__); "
                "print(i.default_index_path())", cwd=work, env=env).stdout.split()
    assert all(Path(p).is_relative_to(venv) for p in where), where  # the wheel's copy, not the checkout's
    result = run(venv / "bin" / "embedtag", "tag", REPO / "examples" / "kubeedge.md", "--id", "1977",
                 "--description", "Kubernetes Native Edge Computing Framework (project under CNCF)", cwd=work, env=env)
    answer = json.loads(result.stdout)
    assert answer["id"] == "1977" and {"k8s", "cloud-native"} <= set(answer["tags"])
