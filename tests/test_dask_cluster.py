"""Where Dask computes: ``--scheduler`` (a running dask.distributed cluster), ``--workers``
(a local one), or neither (the threaded scheduler); and the usage errors around them.

The cluster here is a real deployment on 127.0.0.1 (tests/loopback.py): ``dask
scheduler`` and two ``dask worker`` processes, started as an operator would and killed
whatever happens.  Results are compared with the NumPy backend's, an independent path
(NumPy fast paths, no chunks, no Dask).
"""

from __future__ import annotations

import importlib.util
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from engine.cli.main import build_parser, main
from engine.train.checkpoint import load_checkpoint
from tests.loopback import STARTUP, Deployment, kill_group

ROOT = Path(__file__).resolve().parents[1]
MLP = str(ROOT / "graphs" / "mlp.yaml")

needs_distributed = pytest.mark.skipif(
    importlib.util.find_spec("distributed") is None,
    reason='dask.distributed is not installed: pip install -e ".[dask]"')


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def verbs_with_backend() -> list[str]:
    """Every verb that takes --backend: each must take the cluster options too."""
    parser = build_parser()
    verbs = next(a for a in parser._actions if a.dest == "command").choices
    return [name for name, verb in verbs.items()
            if any("--backend" in a.option_strings for a in verb._actions)]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- usage errors: before anything starts, exit 2, no traceback ----------------------------

def test_every_verb_with_backend_takes_the_cluster_options() -> None:
    parser = build_parser()
    verbs = next(a for a in parser._actions if a.dest == "command").choices
    assert {"run", "gradcheck"} <= set(verbs_with_backend())
    for name in verbs_with_backend():
        options = {o for a in verbs[name]._actions for o in a.option_strings}
        assert {"--scheduler", "--workers", "--worker-memory", "--cluster-timeout"} <= options


@pytest.mark.parametrize("options", [["--workers", "2"], ["--scheduler", "tcp://127.0.0.1:1"],
                                     ["--workers", "2", "--worker-memory", "1GiB"]])
def test_cluster_options_need_the_dask_backend(capsys, options) -> None:
    for verb in ("run", "gradcheck"):
        code, out, err = cli(capsys, verb, MLP, *options)
        assert code == 2, err
        assert "only with --backend dask" in err and "add --backend dask" in err
        assert options[0] in err and "Traceback" not in err and out == ""


@pytest.mark.parametrize("address", ["foo", "127.0.0.1:8786", "http://127.0.0.1:8786",
                                     "tcp://127.0.0.1", "tcp://127.0.0.1:99999",
                                     "tcp://:8786", "tcp://127.0.0.1:8786/path",
                                     "tcp://127.0.0.1:port"])
def test_a_bad_scheduler_address_is_a_usage_error(capsys, address) -> None:
    code, _, err = cli(capsys, "run", MLP, "--backend", "dask", "--scheduler", address)
    assert code == 2
    assert f"--scheduler {address!r}: not a scheduler address" in err
    assert "tcp://HOST:PORT" in err and "Traceback" not in err
    if address == "127.0.0.1:8786":
        assert "did you mean tcp://127.0.0.1:8786?" in err


def test_scheduler_and_workers_together_and_memory_without_workers(capsys) -> None:
    code, _, err = cli(capsys, "run", MLP, "--backend", "dask", "--workers", "2",
                       "--scheduler", "tcp://127.0.0.1:8786")
    assert code == 2 and "give one" in err
    code, _, err = cli(capsys, "run", MLP, "--backend", "dask", "--worker-memory", "1GiB")
    assert code == 2 and "--worker-memory sets the memory of the workers that --workers" in err


@pytest.mark.parametrize("option", ["--workers 0", "--worker-memory lots",
                                    "--cluster-timeout 0", "--cluster-timeout -1"])
def test_bad_option_values_are_argparse_errors(capsys, option) -> None:
    with pytest.raises(SystemExit) as exit:
        main(["run", MLP, "--backend", "dask", *option.split()])
    assert exit.value.code == 2
    assert option.split()[0] in capsys.readouterr().err


@needs_distributed
def test_no_scheduler_at_the_address_is_a_usage_error_after_the_timeout(capsys) -> None:
    address = f"tcp://127.0.0.1:{free_port()}"  # nothing listens there
    code, out, err = cli(capsys, "run", MLP, "--backend", "dask", "--scheduler", address,
                         "--cluster-timeout", "0.5")
    assert code == 2 and out == ""
    assert f"--scheduler {address}: no Dask scheduler answered within 0.5 s" in err
    assert "--cluster-timeout" in err and "Traceback" not in err


@needs_distributed
def test_a_scheduler_without_workers_is_a_usage_error(capsys) -> None:
    from distributed import LocalCluster

    with LocalCluster(n_workers=0, processes=False, protocol="tcp://", host="127.0.0.1",
                      scheduler_port=0,
                      dashboard_address="127.0.0.1:0") as cluster:
        code, _, err = cli(capsys, "run", MLP, "--backend", "dask", "--scheduler",
                           cluster.scheduler_address, "--cluster-timeout", "0.5")
    assert code == 2
    assert "the scheduler has no workers" in err and "dask worker" in err


# -- a deployment on loopback ------------------------------------------------------------

@pytest.fixture(scope="module")
def deployment(tmp_path_factory):
    """``dask scheduler`` and two ``dask worker`` processes on 127.0.0.1, killed at the end
    (their logs are printed if starting them failed)."""
    pytest.importorskip("distributed", reason='dask.distributed is not installed: pip install '
                                              '-e ".[dask]"')
    cluster = Deployment(tmp_path_factory.mktemp("dask"))
    try:
        cluster.start_scheduler()
        cluster.start_worker()
        cluster.start_worker()
        cluster.wait_for_workers(2)
        yield cluster
    except Exception:
        print(cluster.logs())
        raise
    finally:
        cluster.stop()


def run_json(capsys, *options: str) -> dict:
    code, out, err = cli(capsys, "run", MLP, "--json", *options)
    assert code == 0, err
    return {"document": json.loads(out), "err": err}


def assert_same_run(numpy: dict, other: dict, rtol: float = 1e-10) -> None:
    assert other["loss"] == pytest.approx(numpy["loss"], rel=rtol)
    for part in ("outputs", "grads"):
        assert numpy[part].keys() == other[part].keys()
        for name in numpy[part]:
            np.testing.assert_allclose(other[part][name], numpy[part][name], rtol=rtol,
                                       atol=1e-12, err_msg=f"{part} {name}")


def test_run_on_the_deployment_equals_numpy(capsys, deployment) -> None:
    numpy = run_json(capsys)["document"]
    dask = run_json(capsys, "--backend", "dask", "--chunk-rows", "3", "--scheduler",
                    deployment.address)
    assert f"dask: scheduler {deployment.address}, 2 workers, 256.0 MiB each" in dask["err"]
    assert_same_run(numpy, dask["document"])


TINY = """\
name: tiny
dims: {batch: 6}
inputs:
  x: {shape: [batch, 2], init: {normal: {mean: 0.0, std: 1.0}}}
parameters:
  w: {shape: [2, 1], init: {normal: {mean: 0.0, std: 1.0}}}
nodes:
  z: {op: MatMul, inputs: [x, w]}
  a: {op: Tanh, inputs: [z]}
  loss: {op: Mean, inputs: [a]}
outputs: [loss]
loss: loss
"""


def test_gradcheck_on_the_deployment(capsys, deployment, tmp_path) -> None:
    spec = tmp_path / "tiny.yaml"  # finite differences: one compute per parameter element
    spec.write_text(TINY)
    code, out, err = cli(capsys, "gradcheck", str(spec), "--backend", "dask", "--chunk-rows",
                         "4", "--scheduler", deployment.address)
    assert code == 0, out + err
    assert "dask: scheduler" in err


@needs_distributed
def test_workers_start_a_local_cluster_that_is_closed_afterwards(capsys, tmp_path) -> None:
    psutil = pytest.importorskip("psutil")
    me = psutil.Process()
    before = {p.pid for p in me.children(recursive=True)}
    numpy = run_json(capsys)["document"]
    dask = run_json(capsys, "--backend", "dask", "--chunk-rows", "4", "--workers", "2",
                    "--worker-memory", "300MiB")
    assert "dask: local cluster tcp://127.0.0.1:" in dask["err"]
    assert "2 workers, 300.0 MiB each; dashboard http://127.0.0.1:" in dask["err"]
    assert_same_run(numpy, dask["document"])
    # an error once the cluster runs: it is closed all the same
    bad = tmp_path / "x.npy"
    np.save(bad, np.zeros((4, 12)))
    code, _, err = cli(capsys, "run", MLP, "--backend", "dask", "--workers", "1",
                       "--feed", f"x={bad}")
    assert code == 1 and "dask: local cluster" in err and "--feed x=" in err
    left = [p for p in me.children(recursive=True) if p.pid not in before and p.is_running()
            and p.status() != psutil.STATUS_ZOMBIE
            and "resource_tracker" not in " ".join(p.cmdline())]  # Python's, till exit
    assert left == [], [p.cmdline() for p in left]


# -- (b) training on the deployment, (c) a worker killed in the middle of it ----------------

#: Few steps and few chunks a step: every chunk is a round trip through the scheduler.
TRAIN = ("--epochs", "2", "--batch-size", "48", "--seed", "3")
CHUNKS = ("--chunk-rows", "24")


def params_of(path: Path) -> dict[str, np.ndarray]:
    with np.load(path) as saved:
        return {k: saved[k] for k in saved.files if k.startswith("params/")}


@pytest.fixture(scope="module")
def trained(deployment, tmp_path_factory) -> dict[str, dict[str, np.ndarray]]:
    """graphs/mlp.yaml trained on NumPy, and on the deployment with --backend dask."""
    folder = tmp_path_factory.mktemp("trained")
    result = {}
    for name, options in (("numpy", ()), ("dask", ("--backend", "dask", *CHUNKS,
                                                  "--scheduler", deployment.address))):
        saved = folder / f"{name}.npz"
        assert main(["train", MLP, *TRAIN, *options, "--save", str(saved)]) == 0
        result[name] = params_of(saved)
    return result


def test_training_on_the_deployment_reaches_numpys_parameters(trained) -> None:
    numpy, dask = trained["numpy"], trained["dask"]
    assert numpy.keys() == dask.keys() == {"params/w1", "params/b1", "params/w2", "params/b2"}
    for name in numpy:
        np.testing.assert_allclose(dask[name], numpy[name], rtol=1e-9, atol=1e-12,
                                   err_msg=name)


def test_a_worker_killed_mid_training_is_recomputed_and_the_run_ends_the_same(
        deployment, trained, tmp_path) -> None:
    """``kill -9`` of a whole ``dask worker`` (nanny and worker process: a machine lost)
    once the first epoch's checkpoint is written.  Dask computes what that worker held
    again on the others; the run finishes with the parameters of the run without a fault,
    bit for bit, and NumPy's to 1e-9."""
    extra = deployment.start_worker()  # the one to kill: the fixture's two stay
    deployment.wait_for_workers(3)
    saved = tmp_path / "p.npz"
    command = [sys.executable, "-m", "engine", "train", MLP, *TRAIN, "--backend", "dask",
               *CHUNKS, "--scheduler", deployment.address, "--save", str(saved)]
    log = tmp_path / "train.log"
    with open(log, "wb") as output:
        run = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT, cwd=tmp_path,
                               env={**os.environ, "PYTHONPATH": str(ROOT)})  # this engine
    try:
        while not saved.exists() and run.poll() is None:
            time.sleep(0.02)
        assert run.poll() is None, f"the run ended before the kill:\n{log.read_text()}"
        assert load_checkpoint(saved).epoch == 1  # mid-training: 1 of 2 epochs done
        kill_group(extra)
        extra.wait()
        assert run.wait(timeout=STARTUP) == 0, log.read_text()
    finally:
        kill_group(run)
        run.wait()
    assert "3 workers" in log.read_text()
    assert deployment.workers() == 2  # it really died
    after = params_of(saved)
    for name, array in trained["dask"].items():
        np.testing.assert_array_equal(after[name], array, err_msg=name)
        np.testing.assert_allclose(after[name], trained["numpy"][name], rtol=1e-9,
                                   atol=1e-12, err_msg=name)


def train_and_kill_after_the_first_epoch(cluster: Deployment, victim: subprocess.Popen,
                                         saved: Path) -> tuple[int, str]:
    """``engine train`` on ``cluster`` as a subprocess; ``kill -9`` of ``victim``'s process
    group once the first epoch's checkpoint is written; the exit code and the output."""
    log = saved.with_suffix(".log")
    command = [sys.executable, "-m", "engine", "train", MLP, *TRAIN, "--backend", "dask",
               *CHUNKS, "--scheduler", cluster.address, "--cluster-timeout", "1",
               "--save", str(saved)]
    with open(log, "wb") as output:
        run = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT,
                               cwd=saved.parent, env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        while not saved.exists() and run.poll() is None:
            time.sleep(0.02)
        assert run.poll() is None, f"the run ended before the kill:\n{log.read_text()}"
        kill_group(victim)
        return run.wait(timeout=STARTUP), log.read_text()
    finally:
        kill_group(run)
        run.wait()


def test_a_cluster_that_cannot_go_on_ends_the_run_with_an_error_and_the_checkpoint_resumes(
        trained, tmp_path) -> None:
    """When the engine cannot go on: its only worker killed (Dask would wait for workers
    for ever; the engine gives up after --cluster-timeout), then the scheduler killed.  Each
    time: exit 1, one clear line, no traceback; the checkpoint is whole, and resuming from
    it (on NumPy) ends where the uninterrupted run ends."""
    cluster = Deployment(tmp_path)
    try:
        cluster.start_scheduler()
        worker = cluster.start_worker()
        cluster.wait_for_workers(1)
        code, text = train_and_kill_after_the_first_epoch(cluster, worker, tmp_path / "a.npz")
        assert code == 1, text
        assert f"the scheduler at {cluster.address} has had no workers for 1 s" in text
        assert "dask worker" in text and "--resume" in text and "Traceback" not in text
        cluster.start_worker()
        cluster.wait_for_workers(1)
        code, text = train_and_kill_after_the_first_epoch(cluster, cluster.processes[0],
                                                          tmp_path / "b.npz")
        assert code == 1, text
        assert "error: the Dask cluster could not finish the computation: the scheduler " \
               "went away" in text and "--resume" in text and "Traceback" not in text
    finally:
        cluster.stop()
    for saved in ("a.npz", "b.npz"):
        assert load_checkpoint(tmp_path / saved).epoch == 1
        resumed = tmp_path / f"resumed-{saved}"
        assert main(["train", MLP, *TRAIN, "--resume", str(tmp_path / saved),
                     "--save", str(resumed)]) == 0
        for name, array in params_of(resumed).items():
            np.testing.assert_allclose(array, trained["numpy"][name], rtol=1e-9, atol=1e-12,
                                       err_msg=name)


def test_the_cluster_libraries_log_nothing_while_a_session_lasts(capsys) -> None:
    """A lost connection is logged by distributed's threads with its own traceback, at a
    moment that depends on timing; inside a session those logs are silenced (the engine
    says what went wrong itself), and the loggers' levels come back afterwards."""
    import logging

    pytest.importorskip("distributed")
    from engine.runtime.cluster import _quiet_dask_logs

    tcp = logging.getLogger("distributed.comm.tcp")
    tcp.setLevel(logging.INFO)
    seen: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = seen.append
    logging.getLogger().addHandler(handler)
    try:
        with _quiet_dask_logs():
            try:
                raise ConnectionError("stream closed")
            except ConnectionError:
                tcp.exception("write failed")
                logging.getLogger("tornado.application").error("callback failed", exc_info=True)
        assert seen == []
        assert tcp.level == logging.INFO
        tcp.error("after the session")
        assert [record.getMessage() for record in seen] == ["after the session"]
    finally:
        logging.getLogger().removeHandler(handler)
        tcp.setLevel(logging.NOTSET)
