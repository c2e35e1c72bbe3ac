from train_cli.training.schedule import lr_at


def test_steps_apply_after_that_many_completed_epochs():
    rates = [lr_at(done, 0.1, (10, 20, 30), 0.1) for done in range(40)]
    assert rates[:10] == [0.1] * 10  # epochs 1-10
    assert abs(rates[10] - 0.01) < 1e-12 and abs(rates[19] - 0.01) < 1e-12  # epochs 11-20
    assert abs(rates[20] - 0.001) < 1e-12 and abs(rates[39] - 1e-4) < 1e-15


def test_no_steps_keeps_the_rate():
    assert lr_at(100, 0.05, (), 0.1) == 0.05


def test_the_server_schedule_is_lr_at_counted_in_updates():
    """dist_async's servers count updates (from 1), 3 per epoch here: updates 1-3 are epoch 1."""
    from train_cli.training.schedule import ServerSchedule
    schedule = ServerSchedule(0.1, (1, 2), 0.5, updates_per_epoch=3)
    rates = [schedule(n) for n in range(1, 10)]
    assert rates == [lr_at(done, 0.1, (1, 2), 0.5) for done in (0, 0, 0, 1, 1, 1, 2, 2, 2)]
    assert rates[3] == 0.05 and rates[6] == 0.025
