"""`embedtag batch --engine ray` on a local 2-CPU Ray cluster (loopback only): the same lines
as the local batch, in order, and nothing lost when an actor dies mid-run."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from embedtag.batch import run_batch
from embedtag.tagger import Tagger
from tests.conftest import DEFAULT_INDEX_DIR
from tests.helpers import DATABASE_README, GAME_README, K8S_README, write_jsonl

ray = pytest.importorskip("ray")
from embedtag.ray_engine import RayOptions, run_ray_batch  # noqa: E402 - needs ray

DEV_ITEMS = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "dev" / "items.jsonl"

# Ray Data warns about its own deprecated settings on start; not ours to fix
pytestmark = [pytest.mark.slow, pytest.mark.allow_network, pytest.mark.filterwarnings("ignore::DeprecationWarning")]


@pytest.fixture(scope="module")
def local_cluster() -> Iterator[None]:
    """Two CPUs on loopback, no dashboard: what a 2-worker cluster on this machine looks like."""
    from tests.conftest import _Guard

    _Guard.allow_loopback = True  # module fixture runs before the per-test guard opens loopback
    try:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, _node_ip_address="127.0.0.1")
    finally:
        _Guard.allow_loopback = False
    yield
    ray.shutdown()


def _mixed_records(tmp_path: Path, readmes: list[dict[str, object]]) -> Path:
    """Good records with broken ones between them (error lines must match the local batch's)."""
    lines: list[object] = []
    for i, record in enumerate(readmes):
        lines.append(record)
        if i % 7 == 3:
            lines.append("{not json")
        if i % 11 == 5:
            lines.append({"id": f"x{i}", "readme_path": "missing.md"})
            lines.append({"description": "no id"})
    return write_jsonl(tmp_path / "in.jsonl", lines)


def _local(tagger: Tagger, items: Path, out: Path) -> list[str]:
    run_batch(tagger, items, out, batch_size=16)
    return out.read_text(encoding="utf-8").splitlines()


def test_ray_batch_matches_local_batch_and_survives_a_killed_actor(
    local_cluster: None, fake_index_dir: Path, fake_tagger: Tagger, tmp_path: Path
) -> None:
    base = [
        {"id": str(i), "readme": text, "description": f"project {i}"}
        for i, text in enumerate([K8S_README, DATABASE_README, GAME_README] * 12)
    ]
    items = _mixed_records(tmp_path, base)
    expected = _local(fake_tagger, items, tmp_path / "local.jsonl")
    options = RayOptions(actors=2, cpus_per_actor=1, batch_size=4)
    out = tmp_path / "ray.jsonl"
    summary = run_ray_batch(fake_index_dir, "hashing", items, out, options)
    assert out.read_text(encoding="utf-8").splitlines() == expected
    assert summary.written == len(expected) and summary.failed == sum("error" in line for line in expected)
    assert summary.failed > 0
    # an actor exits mid-run (os._exit on its first batch): Ray restarts it and retries the batch
    marker = tmp_path / "crashed"
    crash = RayOptions(actors=2, cpus_per_actor=1, batch_size=4, crash_marker=str(marker))
    out2 = tmp_path / "ray-crash.jsonl"
    run_ray_batch(fake_index_dir, "hashing", items, out2, crash)
    assert marker.exists()  # the crash did happen
    assert out2.read_text(encoding="utf-8").splitlines() == expected


def test_ray_batch_reads_parquet(local_cluster: None, fake_index_dir: Path, fake_tagger: Tagger,
                                 tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [{"id": str(i), "readme": t, "description": ""} for i, t in enumerate([K8S_README, GAME_README] * 3)]
    rows.append({"id": None, "readme": "no id here", "description": ""})
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "in.parquet")
    out = tmp_path / "out.jsonl"
    summary = run_ray_batch(fake_index_dir, "hashing", tmp_path / "in.parquet", out,
                            RayOptions(actors=1, cpus_per_actor=1, batch_size=4))
    got = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [g["id"] for g in got] == [r["id"] for r in rows]
    assert got[0]["tags"] == fake_tagger.tag(K8S_README, id="0").to_json()["tags"]
    assert got[-1]["error"] == "line 7 has no 'id'" and summary.failed == 1


@pytest.mark.skipif(not DEV_ITEMS.is_file(), reason="the dev set (../shared/data) is not beside this clone")
def test_ray_batch_equals_local_batch_on_dev_items_with_the_real_model(
    local_cluster: None, real_tagger: Tagger, tmp_path: Path
) -> None:
    lines = DEV_ITEMS.read_text(encoding="utf-8").splitlines()[:40]
    records = [json.loads(line) for line in lines]
    items = write_jsonl(tmp_path / "dev40.jsonl", [
        {k: r[k] for k in ("id", "description", "readme") if k in r} for r in records
    ])
    expected = _local(real_tagger, items, tmp_path / "local.jsonl")
    out = tmp_path / "ray.jsonl"
    run_ray_batch(DEFAULT_INDEX_DIR, None, items, out, RayOptions(actors=2, cpus_per_actor=1, batch_size=8))
    assert out.read_text(encoding="utf-8").splitlines() == expected
    assert len(expected) == 40


def test_cli_engine_ray_writes_the_local_lines(local_cluster: None, fake_index_dir: Path, fake_tagger: Tagger,
                                               tmp_path: Path) -> None:
    from tests.helpers import run

    items = _mixed_records(tmp_path, [{"id": str(i), "readme": K8S_README} for i in range(8)])
    expected = _local(fake_tagger, items, tmp_path / "local.jsonl")
    out = tmp_path / "cli.jsonl"
    result = run("batch", items, "-o", out, "--engine", "ray", "--index", fake_index_dir, "--model", "hashing",
                 "--actors", "1", "--cpus-per-actor", "1", "--no-cache")
    assert result.exit_code == 1, result.output  # the broken lines
    assert out.read_text(encoding="utf-8").splitlines() == expected
    assert result.stderr.strip().splitlines()[-1].startswith("embedtag batch: 11 records tagged; 3 failed")


# a README whose first chunks say little and whose later ones are about Kubernetes: only an
# adaptive run that embeds the rest finds k8s
_VAGUE = "This project has a few words about nothing in particular, and a video game."
_K8S = "Kubernetes operator controller for container orchestration clusters pods and helm charts."
HEAD_THEN_K8S = "# demo\n\n" + "\n\n".join([" ".join([_VAGUE] * 4)] * 6 + [" ".join([_K8S] * 4)] * 6) + "\n"


def test_cli_engine_ray_takes_the_adaptive_band(local_cluster: None, fake_index_dir: Path, tmp_path: Path) -> None:
    from tests.helpers import run

    items = write_jsonl(tmp_path / "in.jsonl", [{"id": str(i), "readme": HEAD_THEN_K8S} for i in range(4)])
    common = ["--index", fake_index_dir, "--model", "hashing", "--no-cache", "--adaptive"]
    lines = {}
    for band in ("0", "1"):
        local, ray_out = tmp_path / f"local-{band}.jsonl", tmp_path / f"ray-{band}.jsonl"
        assert run("batch", items, "-o", local, *common, "--adaptive-band", band).exit_code == 0
        result = run("batch", items, "-o", ray_out, *common, "--adaptive-band", band, "--engine", "ray",
                     "--actors", "1", "--cpus-per-actor", "1")
        assert result.exit_code == 0, result.output
        lines[band] = ray_out.read_text(encoding="utf-8").splitlines()
        assert lines[band] == local.read_text(encoding="utf-8").splitlines()
    # band 0 keeps each README's head, band 1 embeds it whole: here that changes the tags
    assert "k8s" not in lines["0"][0] and "k8s" in lines["1"][0]
