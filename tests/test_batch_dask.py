"""Batches on a Dask cluster: same bytes as the local batch, and a lost worker loses nothing.

Needs the ``dask`` extra (``pip install "kpal[dask]"``); each test starts its
own two-process ``LocalCluster``.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from kpal import batch
from kpal.cli import cli

distributed = pytest.importorskip("distributed")

NAMES = ["a.png", "b.png", "c.png", "sub/d.png", "sub/e.png", "sub/f.jpg"]


@pytest.fixture
def tree(tmp_path, photo):
    root = tmp_path / "photos"
    (root / "sub").mkdir(parents=True)
    for i, name in enumerate(NAMES):
        photo.crop((i * 3, i * 2, i * 3 + 32, i * 2 + 24)).save(root / name)
    (root / "sub" / "bad.png").write_bytes(b"no image here")
    return root


@pytest.fixture
def client():
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=":0", silence_logs=logging.CRITICAL) \
            as cluster, distributed.Client(cluster) as connected:
        yield connected


def _outputs(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_dask_batch_matches_the_local_batch(tree, tmp_path, client):
    local = list(batch.encode_many(tree, tmp_path / "local", jobs=1, recursive=True, k=8))
    remote = list(batch.encode_many(tree, tmp_path / "dask", recursive=True, k=8,
                                    client=client))
    assert _outputs(tmp_path / "dask") == _outputs(tmp_path / "local")
    assert len(_outputs(tmp_path / "dask")) == len(NAMES)
    assert sorted((r.path, r.error, r.bytes_out, r.k) for r in remote) == sorted(
        (r.path, r.error, r.bytes_out, r.k) for r in local)

    # The command line, through the scheduler's address.
    result = CliRunner().invoke(cli, ["encode", str(tree), "-r", "-o", str(tmp_path / "cli"),
                                      "-k", "8", "--dask", client.scheduler.address])
    assert result.exit_code == 1
    assert result.stdout.splitlines()[0] == "7 files: 6 encoded, 1 failed"
    assert result.stderr.splitlines() == [
        f"kpal: error: {tree / 'sub' / 'bad.png'}: not an image Pillow can read"]
    assert _outputs(tmp_path / "cli") == _outputs(tmp_path / "local")

    # The API, through the scheduler's address: connected to, then closed.
    by_address = list(batch.encode_many(tree, tmp_path / "address", recursive=True, k=8,
                                        client=client.scheduler.address))
    assert sorted((r.path, r.error) for r in by_address) == sorted(
        (r.path, r.error) for r in local)
    assert _outputs(tmp_path / "address") == _outputs(tmp_path / "local")

    # fsspec URLs: the workers open them themselves.
    pytest.importorskip("fsspec")
    by_url = list(batch.encode_many(f"file://{tree}", f"file://{tmp_path / 'url'}",
                                    recursive=True, k=8, client=client))
    assert len(by_url) == len(NAMES) + 1
    assert _outputs(tmp_path / "url") == _outputs(tmp_path / "local")


class _DieOnce(distributed.WorkerPlugin):
    """In every worker: the first task for one file kills its own worker process.

    A marker file, shared by all workers, says the kill has happened.
    """

    def __init__(self, name: str, marker: str) -> None:
        self.name, self.marker = name, marker

    def setup(self, worker) -> None:
        from kpal import batch as worker_batch

        real = worker_batch._WORK["encode"]
        name, marker = self.name, self.marker

        def encode_or_die(job):
            if job.path.endswith(name) and not os.path.exists(marker):
                Path(marker).touch()
                os._exit(1)  # the worker process dies mid-task, as if killed
            return real(job)

        worker_batch._WORK["encode"] = encode_or_die


def test_a_worker_killed_mid_batch_is_retried_and_nothing_is_lost(tree, tmp_path, client):
    expected = tmp_path / "local"
    list(batch.encode_many(tree, expected, jobs=1, recursive=True, k=8))
    marker = tmp_path / "killed"
    client.register_plugin(_DieOnce("c.png", str(marker)))
    results = list(batch.encode_many(tree, tmp_path / "dask", recursive=True, k=8,
                                     client=client))
    assert marker.exists(), "no worker was killed"
    paths = sorted(r.path for r in results)
    assert paths == sorted(str(tree / n) for n in [*NAMES, "sub/bad.png"])  # once each
    bad = tree / "sub" / "bad.png"
    assert [(r.path, r.error) for r in results if not r.ok] == [
        (str(bad), f"{bad}: not an image Pillow can read")]
    assert _outputs(tmp_path / "dask") == _outputs(expected)


def test_relative_paths_mean_what_they_mean_to_the_caller(tree, tmp_path, client, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the workers' working folder stays where it was
    results = list(batch.encode_many("photos", "out", recursive=True, k=8, client=client))
    assert sorted(r.path for r in results) == sorted(
        str(Path("photos") / n) for n in [*NAMES, "sub/bad.png"])
    assert [r.error for r in results if not r.ok] == [
        f"{Path('photos/sub/bad.png')}: not an image Pillow can read"]
    assert len(_outputs(tmp_path / "out")) == len(NAMES)
    # info's records name the files as given too, not as the workers read them
    infos = list(batch.info_many("out", recursive=True, client=client))
    assert sorted(r.report["file"] for r in infos) == sorted(
        str(Path("out") / n).rsplit(".", 1)[0] + ".kpal" for n in NAMES)


def test_a_closed_client_or_no_client_is_refused_at_once(tree, tmp_path, client):
    with pytest.raises(batch.BatchError, match="must be a distributed.Client"):
        batch.encode_many(tree, tmp_path / "out", client=42)
    client.close()
    with pytest.raises(batch.BatchError, match="the Dask client is closed"):
        batch.encode_many(tree, tmp_path / "out", recursive=True, client=client)
    assert not (tmp_path / "out").exists()


def _kernel_threads_of_a_task(task_threads: dict[str, int]) -> tuple[int, int, int]:
    """In a worker: the cores, numba's own limit, and the threads a task's kernels take."""
    import numba

    batch._share_of_cores(task_threads)
    return len(os.sched_getaffinity(0)), numba.config.NUMBA_NUM_THREADS, numba.get_num_threads()


@pytest.mark.skipif(not hasattr(os, "sched_getaffinity"), reason="Linux's core count")
def test_a_hosts_workers_share_its_cores_for_the_compiled_kernels(client):
    """Two one-thread workers on a host: each task's kernels take half its cores, not all."""
    pytest.importorskip("numba")
    shares = batch._task_threads(client.nthreads())
    assert shares == {"127.0.0.1": 2}
    client.run(batch._load_compiled)  # numba imported, as before a task's encode
    cores, limit, taken = client.submit(_kernel_threads_of_a_task, shares, pure=False).result()
    assert taken == max(1, min(cores // 2, limit))


def test_a_client_closed_mid_batch_ends_it_with_one_clear_error(tree, tmp_path, client):
    """The records of the files done, then a BatchError: not a wait for ever, nor
    distributed's ClosedClientError."""
    results = batch.encode_many(tree, tmp_path / "out", recursive=True, k=8, client=client)
    first = next(results)
    assert first.path.startswith(str(tree))
    client.close()
    with pytest.raises(batch.SchedulerLost, match=r"^the Dask client was closed: \d+ files? "
                                                  r"not done; run the batch again with "
                                                  r"--skip-existing"):
        for _ in results:
            pass
    # A file a worker was writing when the client closed is finished (renamed into
    # place) by that worker: on a loaded machine, after this point. None is left.
    import time

    deadline = time.monotonic() + 60
    while list((tmp_path / "out").rglob("*.tmp*")) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not list((tmp_path / "out").rglob("*.tmp*"))


_THREADS_CLIENT = """
import logging, sys
import distributed
from kpal import batch
with distributed.LocalCluster(n_workers=1, threads_per_worker=2, processes=False,
                              dashboard_address=":0", silence_logs=logging.CRITICAL) as cluster, \
        distributed.Client(cluster) as client:
    records = list(batch.encode_many(sys.argv[1], sys.argv[2], recursive=True, k=8,
                                     client=client))
print(sorted((r.path.rsplit("/", 1)[-1], r.error is None) for r in records))
"""


def test_a_threads_client_loads_the_kernels_once_for_all_its_tasks(tree, tmp_path):
    """Two tasks at once in one process: the second waits for numba's import (it found
    it half imported and failed its file)."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", _THREADS_CLIENT, str(tree),
                           str(tmp_path / "out")], capture_output=True, text=True,
                          timeout=300, check=True)
    names = [n.rsplit("/", 1)[-1] for n in NAMES]
    assert done.stdout.strip() == str(sorted([(n, True) for n in names]
                                             + [("bad.png", False)]))


def test_a_scheduler_gone_mid_batch_ends_it_with_one_clear_error(tree, tmp_path):
    """The client then reconnects ("connecting") and its futures are cancelled: the batch
    ends with SchedulerLost naming the files not done, not FuturesCancelledError."""
    cluster = distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=True,
                                       dashboard_address=":0", silence_logs=logging.CRITICAL)
    client = distributed.Client(cluster)
    try:
        results = batch.encode_many(tree, tmp_path / "out", recursive=True, k=8, client=client)
        next(results)
        cluster.close()  # the scheduler and its worker, not the client
        # (the cluster's own client may close it with the scheduler, or it reconnects)
        with pytest.raises(batch.SchedulerLost, match=r"^(lost the Dask scheduler tcp://\S+ "
                                                      r"\(the client is \w+\)|the Dask client "
                                                      r"was closed): \d+ files? not done"):
            for _ in results:
                pass
    finally:
        client.close()
        cluster.close()


def test_a_scheduler_restart_mid_batch_fails_the_cancelled_files_only(tree, tmp_path, client):
    """distributed.wait raises FuturesCancelledError while the client runs on: each
    cancelled file gets its failed record and the batch goes on (it was a traceback)."""
    results = batch.encode_many(tree, tmp_path / "out", recursive=True, k=8, client=client)
    records = [next(results)]
    client.restart()
    records += list(results)
    assert sorted(r.path for r in records) == sorted(str(tree / n)
                                                     for n in [*NAMES, "sub/bad.png"])
    cancelled = [r for r in records if r.error and "cancelled" in r.error]
    assert all(r.error.startswith(f"{r.path}: ") for r in cancelled)
