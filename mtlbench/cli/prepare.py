"""``mtlbench prepare <source>``: turn raw dataset files into a prepared directory (HDF5 shards + manifest).

Wired into the main CLI by ``app.add_typer(prepare_app, name="prepare")``; also runnable alone as
``python -m mtlbench.cli.prepare``. Only argument parsing and printing live here.
"""
from __future__ import annotations

import shlex
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from mtlbench.cli.console import err, out
from mtlbench.cli.console import user_errors as _user_errors
from mtlbench.prepare import ProgressFactory
from mtlbench.seeds import SEED_MAX

prepare_app = typer.Typer(
    help="Read a dataset's raw files and write a prepared directory (HDF5 shards with checksums + a manifest) "
         "that specs name as data.path. Writing is atomic: an interrupted run leaves <out>.partial, which the "
         "same command resumes; a complete <out> is only replaced with --force.",
    no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)

SEED_HELP = "seed of the train/val/test split (recorded in the manifest; specs may re-split with data.split_seed)"
FORCE_HELP = "rebuild even if OUT already holds a complete prepared dataset"
PROGRESS_HELP = "draw progress bars on stderr"


user_errors = _user_errors("interrupted: the partial output is kept; run the same command again to resume")


@contextmanager
def bars(enabled: bool) -> Iterator[ProgressFactory]:
    """A progress factory drawing rich bars (or printing one line per phase when bars are off)."""
    if not enabled:
        def plain(description: str, total: int):
            err.print(f"{description} ({total})", highlight=False, markup=False)
            return lambda n=1: None
        yield plain
        return
    columns = [TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()]
    with Progress(*columns, console=err) as progress:
        def factory(description: str, total: int):
            task = progress.add_task(description, total=total)
            return lambda n=1: progress.advance(task, n)
        yield factory


def command_line(source: str, **opts) -> str:
    """The exact command, recorded in the manifest (defaults included, so it is reproducible as written)."""
    parts = ["mtlbench", "prepare", source]
    for name, value in opts.items():
        flag = "--" + name.replace("_", "-")
        if isinstance(value, bool):
            parts += [flag] if value else []
        elif isinstance(value, list):
            for v in value:
                parts += [flag, str(v)]
        elif value is not None:
            parts += [flag, str(value)]
    return " ".join(shlex.quote(p) for p in parts)


def refuse_early(out: Path, force: bool, fractions: tuple[float, float] | None = None) -> None:
    """What the options alone decide, checked before any source file is read (exit 2, nothing written)."""
    from mtlbench.prepare.common import mtal_scheme
    from mtlbench.store.shards import refuse_to_clobber
    refuse_to_clobber(out, force)
    if fractions is not None:
        mtal_scheme(*fractions)


def done(out: Path) -> None:
    err.print(f"prepared dataset written to {out}", highlight=False, markup=False)


@prepare_app.command("youtube8m")
@user_errors
def youtube8m(src: list[Path] = typer.Option(..., help="folder of video-level *.tfrecord files, searched "
                                              "recursively; repeat for separate train / validate folders"),
              vocabulary: Path = typer.Option(..., help="YouTube-8M vocabulary.csv (or vocabulary_compact.csv)"),
              out: Path = typer.Option(Path("prepared/youtube8m"), help="directory to create"),
              seed: int = typer.Option(0, min=0, max=SEED_MAX, help=SEED_HELP),
              split: str = typer.Option("auto", help="by-id: seeded 70/10/20 by video id; paper: train* files "
                                        "train, validate* files halved into val/test (TAAN); auto: paper when "
                                        "both partitions are present"),
              force: bool = typer.Option(False, help=FORCE_HELP),
              progress: bool = typer.Option(True, help=PROGRESS_HELP)):
    """YouTube-8M video-level TFRecords -> 16 multi-label vertical tasks (TAAN Table 1).

    Every record's two CRC32C checksums are verified; a damaged record stops with its file, record number and
    byte offset. Inputs are mean_rgb ++ mean_audio (1152 floats), stored once per video."""
    from mtlbench.prepare.youtube8m import prepare_youtube8m
    refuse_early(out, force)
    cmd = command_line("youtube8m", src=src, vocabulary=vocabulary, out=out, seed=seed, split=split)
    with bars(progress and err.is_terminal) as factory:
        done(prepare_youtube8m(src, vocabulary, out, seed=seed, split=split, force=force, progress=factory,
                               command=cmd))


@prepare_app.command("omniglot")
@user_errors
def omniglot(src: Path = typer.Option(..., help="folder with images_background.npz, images_evaluation.npz and "
                                      "alphabets.csv -- or Omniglot's images_background/ images_evaluation/ "
                                      "folders or .zip files of <Alphabet>/characterNN/XXXX_YY.png"),
             out: Path = typer.Option(Path("prepared/omniglot"), help="directory to create"),
             seed: int = typer.Option(0, min=0, max=SEED_MAX, help=SEED_HELP),
             force: bool = typer.Option(False, help=FORCE_HELP),
             progress: bool = typer.Option(True, help=PROGRESS_HELP)):
    """Omniglot -> 50 alphabet tasks, 105x105 images (TAAN Table 3).

    Splits: 'default' (per character 14/2/4 drawings, seeded) and 'paper_faithful' (p = 0.9 to train,
    selection on test, as TAAN's code did); a spec picks one with data.options.split."""
    from mtlbench.prepare.omniglot import prepare_omniglot
    refuse_early(out, force)
    cmd = command_line("omniglot", src=src, out=out, seed=seed)
    with bars(progress and err.is_terminal) as factory:
        done(prepare_omniglot(src, out, seed=seed, force=force, progress=factory, command=cmd))


@prepare_app.command("chars74k")
@user_errors
def chars74k(src: Path = typer.Option(..., help="folder with hnd_64x64.npz and fnt_28x28.npz"),
             out: Path = typer.Option(Path("prepared/chars74k"), help="directory to create"),
             seed: int = typer.Option(0, min=0, max=SEED_MAX, help=SEED_HELP),
             letter_seed: int = typer.Option(0, min=0, max=SEED_MAX,
                                             help="seed of the choice of 10 letters for tasks A and a"),
             letters: str | None = typer.Option(None,
                                                help="use these 10 letters (both cases) instead, e.g. abcdefghij"),
             test_fraction: float = typer.Option(0.3, help="per class, share of examples for test"),
             val_fraction: float = typer.Option(0.1, help="share of the remaining examples for validation"),
             force: bool = typer.Option(False, help=FORCE_HELP),
             progress: bool = typer.Option(True, help=PROGRESS_HELP)):
    """Chars74K -> MTAL tasks HD, A, a and Typographic* (MTAL Tables 2-3).

    HD: handwritten digits; A / a: 10 seeded upper / lower-case letters; Typographic*: computer-font digits, a
    stand-in for MTAL's typographic set. Per class 70/30 train/test, 10% of train for validation."""
    from mtlbench.prepare.chars74k import prepare_chars74k
    refuse_early(out, force, (test_fraction, val_fraction))
    cmd = command_line("chars74k", src=src, out=out, seed=seed, letter_seed=letter_seed, letters=letters,
                       test_fraction=test_fraction, val_fraction=val_fraction)
    with bars(progress and err.is_terminal) as factory:
        done(prepare_chars74k(src, out, seed=seed, letter_seed=letter_seed, letters=letters,
                              test_fraction=test_fraction, val_fraction=val_fraction, force=force,
                              progress=factory, command=cmd))


@prepare_app.command("coil20")
@user_errors
def coil20(src: Path = typer.Option(..., help="COIL20_32x32.mat / coil20_unproc.npz, their folder, or a "
                                    "folder of COIL's obj<O>__<P>.png"),
           out: Path = typer.Option(Path("prepared/coil20"), help="directory to create"),
           variant: str = typer.Option("processed", help="processed (20 objects, 32x32) or unprocessed "
                                       "(5 objects, 448x416) when SRC is the shared folder"),
           objects: int = typer.Option(10, help="number of objects in the task (a seeded choice)"),
           object_seed: int = typer.Option(0, min=0, max=SEED_MAX, help="seed of the choice of objects"),
           seed: int = typer.Option(0, min=0, max=SEED_MAX, help=SEED_HELP),
           test_fraction: float = typer.Option(0.3, help="per class, share of examples for test"),
           val_fraction: float = typer.Option(0.1, help="share of the remaining examples for validation"),
           force: bool = typer.Option(False, help=FORCE_HELP),
           progress: bool = typer.Option(True, help=PROGRESS_HELP)):
    """COIL-20 -> one task 'COIL-20' over 10 seeded objects (MTAL Tables 4-5).

    Per class 70/30 train/test, 10% of train for validation; images kept at their size."""
    from mtlbench.prepare.coil20 import prepare_coil20
    refuse_early(out, force, (test_fraction, val_fraction))
    cmd = command_line("coil20", src=src, out=out, variant=variant, objects=objects, object_seed=object_seed,
                       seed=seed, test_fraction=test_fraction, val_fraction=val_fraction)
    with bars(progress and err.is_terminal) as factory:
        done(prepare_coil20(src, out, seed=seed, objects=objects, object_seed=object_seed, variant=variant,
                            test_fraction=test_fraction, val_fraction=val_fraction, force=force,
                            progress=factory, command=cmd))


@prepare_app.command("office-caltech")
@user_errors
def office_caltech(src: Path = typer.Option(..., help="folder of Office-Caltech10 <domain>_SURF_L10.mat files"),
                   out: Path = typer.Option(Path("prepared/office_caltech"), help="directory to create"),
                   domain: list[str] | None = typer.Option(None, help="amazon, caltech, dslr, webcam "
                                                              "(repeatable; default: every file present)"),
                   seed: int = typer.Option(0, min=0, max=SEED_MAX, help=SEED_HELP),
                   test_fraction: float = typer.Option(0.3, help="per class, share of examples for test"),
                   val_fraction: float = typer.Option(0.1, help="share of the remaining examples for validation"),
                   force: bool = typer.Option(False, help=FORCE_HELP),
                   progress: bool = typer.Option(True, help=PROGRESS_HELP)):
    """Office-Caltech10 SURF features -> one 10-class task per domain (MTAL uses Amazon).

    Inputs are 800-d visual-word histograms, normalised at load time (row sum, then z-score on train rows)."""
    from mtlbench.prepare.office_caltech import prepare_office_caltech
    refuse_early(out, force, (test_fraction, val_fraction))
    cmd = command_line("office-caltech", src=src, out=out, domain=domain, seed=seed,
                       test_fraction=test_fraction, val_fraction=val_fraction)
    with bars(progress and err.is_terminal) as factory:
        done(prepare_office_caltech(src, out, domains=domain or None, seed=seed, test_fraction=test_fraction,
                                    val_fraction=val_fraction, force=force, progress=factory, command=cmd))


@prepare_app.command("image-folder")
@user_errors
def image_folder(src: Path = typer.Option(..., help="folder with one sub-folder per task, each with one "
                                          "sub-folder per class (e.g. OfficeHomeDataset with Art/, Clipart/...)"),
                 out: Path = typer.Option(..., help="directory to create (e.g. prepared/office_home)"),
                 task: list[str] | None = typer.Option(None, help="task folder to include (repeatable; "
                                                          "default: all), e.g. --task Art"),
                 size: str | None = typer.Option(None, help="resize to N or HxW (needed when a task's "
                                                    "images differ in size)"),
                 mode: str = typer.Option("auto", help="L (grey), RGB, or auto (grey if all images are)"),
                 seed: int = typer.Option(0, min=0, max=SEED_MAX, help=SEED_HELP),
                 test_fraction: float = typer.Option(0.3, help="per class, share of examples for test"),
                 val_fraction: float = typer.Option(0.1, help="share of the remaining examples for validation"),
                 force: bool = typer.Option(False, help=FORCE_HELP),
                 progress: bool = typer.Option(True, help=PROGRESS_HELP)):
    """A folder per task, a sub-folder per class -> one classification task per folder.

    How Office-Home Art joins MTAL's unrelated set: --src OfficeHomeDataset --task Art --size 64
    --out prepared/office_home. Per class 70/30 train/test, 10% of train for validation."""
    from mtlbench.prepare.image_folder import prepare_image_folder
    refuse_early(out, force, (test_fraction, val_fraction))
    cmd = command_line("image-folder", src=src, out=out, task=task, size=size, mode=mode, seed=seed,
                       test_fraction=test_fraction, val_fraction=val_fraction)
    with bars(progress and err.is_terminal) as factory:
        done(prepare_image_folder(src, out, tasks=task or None, size=size, mode=mode, seed=seed,
                                  test_fraction=test_fraction, val_fraction=val_fraction, force=force,
                                  progress=factory, command=cmd))


@prepare_app.command("verify")
@user_errors
def verify(path: Path = typer.Argument(..., help="a prepared dataset directory")):
    """Check a prepared directory: the manifest (its seal, and its class counts, split counts and task names
    against the shards), every shard's sha256 and every HDF5 chunk's checksum.

    Prints the tasks and their split sizes; exit 2 with the reason when anything is missing, edited or corrupt
    (the same code `validate` and `train` give for the same problem)."""
    from rich.table import Table

    from mtlbench.errors import DataError, InputError
    from mtlbench.store.manifest_check import SEAL, is_sealed
    from mtlbench.store.shards import verify_prepared
    try:
        manifest = verify_prepared(path)
    except DataError as e:
        raise InputError(str(e)) from None
    table = Table(title=f"{path}: {manifest['dataset']}, {len(manifest['tasks'])} tasks, split seed "
                        f"{manifest['split']['seed']}")
    for col in ("task", "classes", "examples", "train", "val", "test"):
        table.add_column(col, justify="left" if col == "task" else "right")
    for t in manifest["tasks"]:
        c = t["counts"]["default"]
        table.add_row(t["name"], str(t["n_classes"]), str(c.get("all", sum(c.values()))), str(c["train"]),
                      str(c["val"]), str(c["test"]))
    out.print(table)
    if not is_sealed(path):
        err.print(f"{path}: note: no {SEAL} (prepared by an older mtlbench), so hand edits of class names cannot "
                  f"be detected; re-run its prepare command with --force to seal it", highlight=False, markup=False)
    err.print(f"{path}: ok ({len(manifest['shards'])} shards verified)", highlight=False, markup=False)


if __name__ == "__main__":
    prepare_app(prog_name="mtlbench prepare")
    sys.exit(0)
