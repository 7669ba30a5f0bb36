"""TD-MPC2-style value-equivalent model: a seconds-long online run beats random on a 1-D point mass."""

from point_mass import POINT_ID, register_point_mass


def test_tdmpc_beats_random_on_point_mass(tmp_path):
    from scripts.tdmpc import run
    from trainers.runs.tdmpc import TDMPCRunConfig

    register_point_mass()
    config = TDMPCRunConfig(env=POINT_ID, steps=300, seed_steps=150, pretrain_updates=100, lr=1e-3, batch_size=64,
                            hidden=64, latent_dim=32, num_q=2, planner="mppi", candidates=64, iterations=2,
                            prior_candidates=8, eval_episodes=8, seed=0, run_dir=str(tmp_path))
    record = run(config)["eval"]  # the saved model as loaded; 10-50 s on 2 shared cores: 250 updates, MPPI
    # Random play returns -17 +- 7 per episode (measured here on the same 8 seeds), so the mean of 8 random
    # episodes has a standard error of ~2.5; -8.5 is ~3.4 standard errors above random's expectation. Measured:
    # -4.9 (seed 0); a planner that heads for 0 and holds gets about -2.
    assert record["return_mean"] > -8.5, record
    assert record["return_mean"] > record["random_mean"] / 2, record  # closes at least half of the gap to 0
