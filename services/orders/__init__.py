"""OrderService: the reference adapter for a platform's order system (gRPC over MongoDB).

rules.py (pure business rules and validation), repository.py (data access), convert.py
(documents → proto), server.py (servicer, health, metrics, ``main``), catalog.py and seed.py
(demo data). See README.md beside this file.
"""
