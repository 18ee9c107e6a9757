"""The run store: the only reader and writer of run directories. Pure file I/O.

A run directory holds

    status.json       the run's state, written last at every stage: "running",
                      "completed", "interrupted" or "failed"; finished grades; the command
    config.toml       the full configuration, in the schema `mgdl run` reads
    environment.json  versions, backend, git commit, CPU and cores; a resumed run keeps
                      its earlier sittings' under "earlier" (`record_environment`)
    checkpoint.npz    everything needed to continue: finished grades' parameters, scales and
                      summaries, the auxiliary state, the history so far and, when a grade was
                      interrupted, its parameters and optimiser state
    params.npz        parameters of the finished grades (`grade1/hidden/0/W`, ...; `scales`)
    predictions.npz   the prediction after each finished grade (`grade1`, ...)
    images.npz        for images: the references (`reference/target`, ...) and the image
                      after each grade (`grade1`, ...), what the figures are drawn from
    history.csv       one row per record
    metrics.json      final metrics and one entry per grade
    *.png             figures

Every file is written atomically (a temporary file in the same folder, then a rename), so a
reader never sees a partial file under its final name. `status.json` is written after the
files it describes; readers trust only what it says. Arrays are NPZ read with
`allow_pickle=False`; JSON is strict (no NaN or Infinity: non-finite numbers become null).
Checkpoints use the path-named NPZ of the parameters rather than Orbax: the pytrees are
small (megabytes), one file renamed into place is atomic, and NumPy alone reads it back.

This package imports no model, problem or figure code: it maps named arrays, dicts and
text to files and back. Its modules, by concept: `_layout` (the files' names, the kinds of
directory), `_io` (atomic writes, strict JSON, NPZ, CSV, TOML), `_trees` (pytrees as
path-named arrays), `_locks` (the OS lock of the working process), `_records` (status
records, the summary's shape, the environment) and `_dirs` (finding, claiming, opening,
clearing and adopting directories). Everything public is here, as `runs.NAME`.
"""

from __future__ import annotations

from multigrade.runs._dirs import (
    adopt,
    adopt_children,
    claim,
    claim_or_open,
    clearable,
    default_out,
    foreign_files,
    foreign_files_as,
    is_run_dir,
    kind_of,
    open_dir,
    owner,
    subdir,
)
from multigrade.runs._io import (
    atomic_open,
    read_history,
    read_json,
    read_npz,
    read_rows,
    read_toml,
    read_toml_text,
    strict,
    toml_text,
    write_history,
    write_json,
    write_npz,
    write_rows,
    write_text,
    write_toml,
)
from multigrade.runs._layout import (
    CHECKPOINT,
    CONFIG,
    DROPPED,
    ENVIRONMENT,
    FORMAT,
    GRADES_PLOT,
    HISTORY,
    HISTORY_PLOT,
    IMAGES,
    KINDS,
    LOCK,
    MARKER,
    METRICS,
    PARAMS,
    PREDICTIONS,
    SINGLE,
    STATES,
    STATUS,
    STORE_FILES,
    RunDirError,
    last_read,
)
from multigrade.runs._locks import (
    Lock,
    holds_lock,
    lock,
)
from multigrade.runs._records import (
    GradeRecord,
    RunSummary,
    cores,
    environment,
    read_status,
    read_summary,
    record_environment,
    write_status,
)
from multigrade.runs._trees import (
    arrays_to_tree,
    load_params,
    path_name,
    save_params,
    tree_to_arrays,
)

__all__ = [
    "adopt",
    "adopt_children",
    "claim",
    "claim_or_open",
    "clearable",
    "cores",
    "default_out",
    "foreign_files",
    "foreign_files_as",
    "is_run_dir",
    "kind_of",
    "open_dir",
    "owner",
    "subdir",
    "atomic_open",
    "read_history",
    "read_json",
    "read_npz",
    "read_rows",
    "read_toml",
    "read_toml_text",
    "strict",
    "toml_text",
    "write_history",
    "write_json",
    "write_npz",
    "write_rows",
    "write_text",
    "write_toml",
    "CHECKPOINT",
    "CONFIG",
    "DROPPED",
    "ENVIRONMENT",
    "FORMAT",
    "GRADES_PLOT",
    "HISTORY",
    "HISTORY_PLOT",
    "IMAGES",
    "KINDS",
    "LOCK",
    "MARKER",
    "METRICS",
    "PARAMS",
    "PREDICTIONS",
    "SINGLE",
    "STATES",
    "STATUS",
    "STORE_FILES",
    "RunDirError",
    "last_read",
    "Lock",
    "holds_lock",
    "lock",
    "GradeRecord",
    "RunSummary",
    "environment",
    "read_status",
    "read_summary",
    "record_environment",
    "write_status",
    "arrays_to_tree",
    "load_params",
    "path_name",
    "save_params",
    "tree_to_arrays",
]
