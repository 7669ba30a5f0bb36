"""Reference scores of the Atari-100k games: random, human, and DreamerV3 at 20k agent steps; human-normalised scores.

``dreamerv3_20k`` is computed from danijar/dreamerv3 ``scores/atari100k-dreamerv3.json.gz`` (the Nature runs,
commit e3f0224): per seed, the mean return of the training episodes whose end falls in (60k, 80k] env frames,
i.e. (15k, 20k] agent steps at action repeat 4; then the mean over seeds, with the min and max over seeds.
``seeds`` counts the seeds with an episode ending in that window (DemonAttack: 4 of 5). Random and human are the
standard Atari-100k figures. HNS = (score - random) / (human - random).
"""

from __future__ import annotations

from typing import NamedTuple


class AtariReference(NamedTuple):
    env_id: str
    random: float
    human: float
    dreamerv3_20k: float
    dreamerv3_20k_min: float
    dreamerv3_20k_max: float
    seeds: int


DREAMERV3_WINDOW = (15_000, 20_000)  # agent steps: (low, high], as the frames (60k, 80k] at action repeat 4

ATARI_100K: dict[str, AtariReference] = {
    "alien": AtariReference("ALE/Alien-v5", 227.8, 7127.7, 268.1, 190, 382.5, 5),
    "amidar": AtariReference("ALE/Amidar-v5", 5.8, 1719.5, 11.7, 6.4, 22.3, 5),
    "assault": AtariReference("ALE/Assault-v5", 222.4, 742.0, 383.4, 305.7, 458.5, 5),
    "asterix": AtariReference("ALE/Asterix-v5", 210.0, 8503.3, 382.5, 221.1, 550, 5),
    "bank_heist": AtariReference("ALE/BankHeist-v5", 14.2, 753.1, 9.8, 5, 18.3, 5),
    "battle_zone": AtariReference("ALE/BattleZone-v5", 2360.0, 37187.5, 4350, 750, 11000, 5),
    "boxing": AtariReference("ALE/Boxing-v5", 0.1, 12.1, 23.9, 12.3, 35.3, 5),
    "breakout": AtariReference("ALE/Breakout-v5", 1.7, 30.5, 4.2, 2.8, 6.7, 5),
    "chopper_command": AtariReference("ALE/ChopperCommand-v5", 811.0, 7387.8, 658.5, 362.5, 957.1, 5),
    "crazy_climber": AtariReference("ALE/CrazyClimber-v5", 10780.5, 35829.4, 21470, 14850, 29450, 5),
    "demon_attack": AtariReference("ALE/DemonAttack-v5", 152.1, 1971.0, 180.0, 80, 381.2, 4),
    "freeway": AtariReference("ALE/Freeway-v5", 0.0, 29.6, 0, 0, 0, 5),
    "frostbite": AtariReference("ALE/Frostbite-v5", 65.2, 4334.7, 175.1, 95, 240, 5),
    "gopher": AtariReference("ALE/Gopher-v5", 257.6, 2412.5, 376, 324, 432, 5),
    "hero": AtariReference("ALE/Hero-v5", 1027.0, 30826.4, 2373.6, 1200, 2929.4, 5),
    "jamesbond": AtariReference("ALE/Jamesbond-v5", 29.0, 302.8, 37.8, 4.2, 66.7, 5),
    "kangaroo": AtariReference("ALE/Kangaroo-v5", 52.0, 3035.0, 107.5, 0, 254.5, 5),
    "krull": AtariReference("ALE/Krull-v5", 1598.0, 2665.5, 2360.5, 2006.7, 2545, 5),
    "kung_fu_master": AtariReference("ALE/KungFuMaster-v5", 258.5, 22736.3, 4933, 2275, 9300, 5),
    "ms_pacman": AtariReference("ALE/MsPacman-v5", 307.3, 6951.6, 490.0, 388.2, 616.2, 5),
    "pong": AtariReference("ALE/Pong-v5", -20.7, 14.6, -20.8, -21, -20.5, 5),
    "private_eye": AtariReference("ALE/PrivateEye-v5", 24.9, 69571.3, 397.5, 0, 1737.5, 5),
    "qbert": AtariReference("ALE/Qbert-v5", 163.9, 13455.0, 281.3, 237.5, 375, 5),
    "road_runner": AtariReference("ALE/RoadRunner-v5", 11.5, 7845.0, 1144.5, 610, 1600, 5),
    "seaquest": AtariReference("ALE/Seaquest-v5", 68.4, 42054.7, 204.6, 122.5, 345, 5),
    "up_n_down": AtariReference("ALE/UpNDown-v5", 533.4, 11693.2, 2092.1, 1407.5, 2978.3, 5),
}
_BY_ENV = {reference.env_id: game for game, reference in ATARI_100K.items()}


def game_of(env_id: str) -> str | None:
    """``ALE/Boxing-v5`` -> ``boxing``; ``None`` for an env outside the 26 Atari-100k games."""
    return _BY_ENV.get(env_id)


def hns(game: str, score: float) -> float:
    """Human-normalised score of ``score`` on ``game`` (0 = random, 1 = human)."""
    reference = ATARI_100K[game]
    return (score - reference.random) / (reference.human - reference.random)
