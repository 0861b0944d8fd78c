"""The workshop's tooling, which no notebook imports: the command line (:mod:`.cli`), setting the machine
up (:mod:`.system`), running the series (:mod:`.notebooks`, :mod:`.runner`), its HTML site (:mod:`.site`),
the participants' copies (:mod:`.exercises_build`), ``make check`` (:mod:`.check`) and ``make prefetch``
(:mod:`.prefetch`)."""
