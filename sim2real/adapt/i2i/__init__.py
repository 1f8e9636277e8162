"""I2I Adapt (Murez et al., CVPR 2018, "Image to Image Translation for Domain Adaptation"): ``sim2real adapt --method i2i``.

* ``config.py``  I2IConfig (model / loss / optim / train / perf)
* ``models.py``  the shared encoder f, the decoders g_x / g_y, the classifier h, the latent and image
  discriminators, and the two views the rest of the package loads: h o f as a task network, g_y o f as a generator
* ``losses.py``  LSGAN, WGAN-GP (gradient penalty), L1 reconstruction / cycle
* ``train.py``   the method the engine runs, and ``train_i2i``
"""
