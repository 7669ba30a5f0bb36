"""TD-MPC2-style value-equivalent model from FRAMES: the conv encoder learns LeftRight's cue with no decoder."""

from worldmodels.envs.toy import LEFTRIGHT_ID


def test_tdmpc_from_pixels_beats_random_on_leftright(tmp_path):
    from scripts.tdmpc import run
    from trainers.runs.tdmpc import TDMPCRunConfig

    # 16x16 frames keep the 4-stage conv encoder cheap; the cue still fills half of every frame. Discrete
    # actions: the categorical prior acts (MPPI searches Box actions). 250 updates, ~40 s on 2 shared cores.
    config = TDMPCRunConfig(env=LEFTRIGHT_ID, obs="pixels", image_size=16, steps=150, seed_steps=50,
                            pretrain_updates=150, horizon=1, lr=1e-3, batch_size=32, hidden=64, latent_dim=32, num_q=2,
                            eval_episodes=8, seed=0, run_dir=str(tmp_path))
    record = run(config)["eval"]
    # Random play returns 0 +- 4.5 per 20-step episode (sqrt(20)), so the mean of 8 random episodes has a standard
    # error of 1.6: a mean of 10 is > 6 standard errors above random. Naming the shown side every step returns 20
    # (measured with seed 0: the agent 20.0 on all 8 episodes, random 0.0 +- 4.1 on the same seeds).
    assert record["return_mean"] >= 10, record
    assert record["return_mean"] > record["random_mean"] + 8, record
