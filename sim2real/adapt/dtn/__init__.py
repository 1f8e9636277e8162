"""DTN, the Domain Transfer Network (Taigman, Polyak & Wolf, ICLR 2017): config (:mod:`.config`), networks
(:mod:`.models`), losses (:mod:`.losses`), the method and its trainer (:mod:`.train`)."""
