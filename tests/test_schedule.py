from train_cli.training.schedule import lr_at


def test_steps_apply_after_that_many_completed_epochs():
    rates = [lr_at(done, 0.1, (10, 20, 30), 0.1) for done in range(40)]
    assert rates[:10] == [0.1] * 10  # epochs 1-10
    assert abs(rates[10] - 0.01) < 1e-12 and abs(rates[19] - 0.01) < 1e-12  # epochs 11-20
    assert abs(rates[20] - 0.001) < 1e-12 and abs(rates[39] - 1e-4) < 1e-15


def test_no_steps_keeps_the_rate():
    assert lr_at(100, 0.05, (), 0.1) == 0.05
