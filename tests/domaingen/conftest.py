"""Tests of the domain-generalization track end to end: DomainBed tasks, QT-DoG runs, EoQ ensembles,
tables."""
