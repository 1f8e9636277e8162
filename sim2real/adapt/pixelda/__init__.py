"""PixelDA (Bousmalis et al., CVPR 2017): config (:mod:`.config`), one step (:mod:`.step`), the trainer (:mod:`.train`)."""
