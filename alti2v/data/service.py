"""A tf.data service's servers, started in this process: the dispatcher, and workers that
run input_fn's pipeline for trainers elsewhere (python -m alti2v.data_service starts one).
"""
from __future__ import annotations

import tensorflow as tf

ROLES = ("dispatcher", "worker")


def start(role: str, port: int = 0, host: str = "localhost",
          dispatcher_address: str = "", work_dir: str = ""):
  """Starts a dispatcher or a worker server in this process and returns it (and its address).

  Args:
    role: "dispatcher" or "worker".
    port: 0 = any free port.
    host: the name others reach this machine by.
    dispatcher_address: a worker's dispatcher, HOST:PORT or grpc://HOST:PORT.
    work_dir: a dispatcher's journal directory ("" = none).

  Returns:
    (server, "grpc://HOST:PORT" it serves on). Keep the server referenced until this
    process ends: a worker stopped (garbage-collected) while an endless training job it
    serves is open can block forever (BUILD.md, "Input on other machines").

  Raises:
    ValueError: an unknown role, or a worker without a dispatcher_address.
  """
  if role == "dispatcher":
    server = tf.data.experimental.service.DispatchServer(
        tf.data.experimental.service.DispatcherConfig(
            port=port, work_dir=work_dir or None, fault_tolerant_mode=bool(work_dir)))
    return server, f"grpc://{host}:{server.target.rsplit(':', 1)[1]}"
  if role == "worker":
    if not dispatcher_address:
      raise ValueError("a worker needs --dispatcher_address HOST:PORT")
    server = tf.data.experimental.service.WorkerServer(
        tf.data.experimental.service.WorkerConfig(
            dispatcher_address=dispatcher_address.removeprefix("grpc://"), port=port,
            worker_address=f"{host}:%port%"))
    # pylint: disable=protected-access
    return server, f"grpc://{host}:{server._address.rsplit(':', 1)[1]}"
  raise ValueError(f"role must be one of {ROLES}, got {role!r}")
