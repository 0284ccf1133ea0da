"""The learn loop (trpo.run): callbacks see every iteration and can stop it."""

from conftest import EVAL_EACH

from trpo import TRPO


def test_callback_sees_every_iteration_and_can_stop_training():
    seen = []

    def callback(stats):
        seen.append(stats.iteration)
        return stats.iteration < 3

    agent = TRPO("CartPole-v1", **EVAL_EACH).learn(10_000, callback=callback)
    assert seen == [1, 2, 3]
    assert agent.steps == 3 * EVAL_EACH["steps_per_iter"]
