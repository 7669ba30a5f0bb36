"""Import recorded episodes (a directory of .npz files or a local Minari dataset) into a new episode store.

``wm import --source DIR --format npz --out STORE`` or ``wm import --source NAMESPACE/DATASET-v0 --format minari
--out STORE``. Every episode is validated before anything is written; one bad episode refuses the whole
import, with one line per problem naming the episode, the field and the fix (formats and the reward
convention: :mod:`worldmodels.data.importers`, :mod:`worldmodels.data.validate`, the README's dataset section).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

from worldmodels.config import arg
from worldmodels.data.importers import import_episodes, minari_source, npz_source
from worldmodels.data.validate import ImportRefused

SOURCES = {"npz": npz_source, "minari": minari_source}
_SHOWN_PROBLEMS = 50  # a dataset broken everywhere would otherwise print one line per episode


@dataclass
class ImportConfig:
    source: str = arg("", "a directory of .npz episodes (--format npz), or a Minari dataset id or path (--format minari)")
    format: str = arg("npz", "source format", choices=tuple(SOURCES))
    out: str = arg("data/imported", "new episode store directory to write (must not hold a store yet)")
    env: str = arg("", "env id recorded in the store, used when a later command evaluates on it "
                       "(empty: dataset.json's env_id, the Minari dataset's env, else import:<name>)")
    image_size: int = arg(0, "resize every frame to image_size x image_size (cv2 INTER_AREA); 0 = keep the recorded size",
                          minimum=0, maximum=1024)
    mark_truncated: bool = arg(False, "an episode whose last step has neither flag is imported as truncated "
                                      "(recording stopped) instead of refused")


CONFIG = ImportConfig


def run(config: ImportConfig) -> dict:
    """Read the source, validate every episode, write the store; returns the import stats."""
    if not config.source:
        raise ValueError("--source is required: a directory of .npz episodes, or a Minari dataset id or path")
    if config.image_size and config.image_size < 8:
        raise ValueError(f"--image-size must be 0 (keep) or >= 8, got {config.image_size}")
    source = SOURCES[config.format](config.source, env_id=config.env)
    try:
        stats = import_episodes(source, config.out, image_size=config.image_size, mark_truncated=config.mark_truncated)
    except ImportRefused as refused:
        if len(refused.problems) == 1:  # one line says it all
            raise ValueError(f"refused, nothing imported: {refused.problems[0]}") from None
        for problem in refused.problems[:_SHOWN_PROBLEMS]:
            print(f"wm import: {problem}", file=sys.stderr)
        if len(refused.problems) > _SHOWN_PROBLEMS:
            print(f"wm import: ... and {len(refused.problems) - _SHOWN_PROBLEMS} more problem(s)", file=sys.stderr)
        raise ValueError(f"{refused.summary} (each problem is listed above)") from None
    print(f"wm import: {stats.episodes} episodes ({stats.frames} frames, mean return {stats.mean_return:.3f}) "
          f"from {config.source} -> {stats.out} in {stats.seconds:.1f}s")
    return stats.to_dict()
