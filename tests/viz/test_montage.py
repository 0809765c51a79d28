def test_the_montage_has_a_class_legend():
    import numpy as np

    from xctdask.viz import montage

    img = np.random.default_rng(0).normal(size=(6, 16, 16))
    labels = np.zeros((6, 16, 16), np.uint8)
    labels[:, 8:] = 2
    fig = montage(img, labels, slices=1, class_names=["matrix", "fibre", "pore"])
    (legend,) = fig.legends
    assert [t.get_text() for t in legend.get_texts()] == ["0: matrix", "1: fibre", "2: pore"]
