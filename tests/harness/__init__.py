"""Real-service test harness: Redis, PostgreSQL, Azurite and a Key Vault fake on 127.0.0.1.

Modules: `services` (Redis/PostgreSQL, throwaway servers, Redis Cluster), `azurite`
(Azurite blob emulator from npm), `keyvault_fake` (HTTPS fake of the Key Vault REST API
and static test credentials) and `plugin` (the pytest fixtures).
"""
