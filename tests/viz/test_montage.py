def test_the_montage_has_a_class_legend():
    import numpy as np

    from xctdask.viz import montage

    img = np.random.default_rng(0).normal(size=(6, 16, 16))
    labels = np.zeros((6, 16, 16), np.uint8)
    labels[:, 8:] = 2
    fig = montage(img, labels, slices=1, class_names=["matrix", "fibre", "pore"])
    (legend,) = fig.legends
    assert [t.get_text() for t in legend.get_texts()] == ["0: matrix", "1: fibre", "2: pore"]


def test_an_overlay_without_labelled_voxels_draws_without_a_legend():
    import numpy as np

    from xctdask.viz import montage

    img = np.random.default_rng(0).normal(size=(6, 16, 16))
    unlabelled = np.full((6, 16, 16), 255, np.uint8)  # sparse labels away from these slices
    fig = montage(img, unlabelled, slices=2)  # numpy's "number sections" error before
    assert len(fig.axes) == 4 and not fig.legends
