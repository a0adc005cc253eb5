"""Project checks for checkov's Bicep framework (loaded by infra/scan.sh).

checkov's built-in Bicep checks do not look at most of what this deployment
promises (shared-key access off, TLS-only Redis with Entra ID, password-less
PostgreSQL, WORM container, wrap-only key with rotation). Each rule below pins one
of those properties to the literal value the templates set, so a change that weakens
one fails the scan unless it is skipped inline with a reason, like any other check.
"""

from __future__ import annotations

from typing import Any

from checkov.bicep.checks.resource.base_resource_value_check import BaseResourceValueCheck
from checkov.common.models.enums import CheckCategories, CheckResult
from checkov.common.util.data_structures_utils import find_in_dict


class _Require(BaseResourceValueCheck):
    """One property of one resource type must hold one of the expected values."""

    def __init__(
        self, check_id: str, name: str, resource: str, key: str, expected: list[Any]
    ) -> None:
        self._key = key
        self._expected = expected
        super().__init__(
            name=name,
            id=check_id,
            categories=(CheckCategories.GENERAL_SECURITY,),
            supported_resources=(resource,),
        )

    def get_inspected_key(self) -> str:
        return self._key

    def get_expected_value(self) -> Any:
        return self._expected[0]

    def get_expected_values(self) -> list[Any]:
        return self._expected


class _KeyIsWrapOnlyAndRotates(BaseResourceValueCheck):
    """The KEK allows only wrapKey/unwrapKey and its rotation policy rotates it."""

    def __init__(self) -> None:
        super().__init__(
            name="Ensure the Key Vault KEK is wrap/unwrap only and has a rotate action",
            id="CKV_CKPT_12",
            categories=(CheckCategories.ENCRYPTION,),
            supported_resources=("Microsoft.KeyVault/vaults/keys",),
        )

    def scan_resource_conf(self, conf: dict[str, Any]) -> CheckResult:
        ops = find_in_dict(conf, "properties/keyOps")
        actions = find_in_dict(conf, "properties/rotationPolicy/lifetimeActions")
        if not isinstance(ops, list) or sorted(ops) != ["unwrapKey", "wrapKey"]:
            return CheckResult.FAILED
        if not isinstance(actions, list):
            return CheckResult.FAILED
        kinds = {
            str(find_in_dict(a, "action/type")).lower() for a in actions if isinstance(a, dict)
        }
        return CheckResult.PASSED if "rotate" in kinds else CheckResult.FAILED

    def get_inspected_key(self) -> str:
        return "properties/keyOps"

    def get_evaluated_keys(self) -> list[str]:
        return ["properties/keyOps", "properties/rotationPolicy/lifetimeActions"]


_RULES = [
    (
        "CKV_CKPT_1",
        "Key Vault uses Azure RBAC, not access policies",
        "Microsoft.KeyVault/vaults",
        "properties/enableRbacAuthorization",
        [True],
    ),
    (
        "CKV_CKPT_2",
        "Storage account refuses shared-key (account key and SAS) authorization",
        "Microsoft.Storage/storageAccounts",
        "properties/allowSharedKeyAccess",
        [False],
    ),
    (
        "CKV_CKPT_3",
        "Storage account forbids anonymous public blob access",
        "Microsoft.Storage/storageAccounts",
        "properties/allowBlobPublicAccess",
        [False],
    ),
    (
        "CKV_CKPT_4",
        "Blob versioning is on",
        "Microsoft.Storage/storageAccounts/blobServices",
        "properties/isVersioningEnabled",
        [True],
    ),
    (
        "CKV_CKPT_5",
        "Blob soft delete is on",
        "Microsoft.Storage/storageAccounts/blobServices",
        "properties/deleteRetentionPolicy/enabled",
        [True],
    ),
    (
        "CKV_CKPT_6",
        "Archive container has version-level immutability (WORM) enabled",
        "Microsoft.Storage/storageAccounts/blobServices/containers",
        "properties/immutableStorageWithVersioning/enabled",
        [True],
    ),
    (
        "CKV_CKPT_7",
        "Redis non-TLS port is off",
        "Microsoft.Cache/redis",
        "properties/enableNonSslPort",
        [False],
    ),
    (
        "CKV_CKPT_8",
        "Redis requires TLS 1.2",
        "Microsoft.Cache/redis",
        "properties/minimumTlsVersion",
        ["1.2"],
    ),
    (
        "CKV_CKPT_9",
        "Redis access keys are disabled (Entra ID only)",
        "Microsoft.Cache/redis",
        "properties/disableAccessKeyAuthentication",
        [True],
    ),
    (
        "CKV_CKPT_10",
        "PostgreSQL password authentication is off",
        "Microsoft.DBforPostgreSQL/flexibleServers",
        "properties/authConfig/passwordAuth",
        ["Disabled"],
    ),
    (
        "CKV_CKPT_11",
        "PostgreSQL Entra ID authentication is on",
        "Microsoft.DBforPostgreSQL/flexibleServers",
        "properties/authConfig/activeDirectoryAuth",
        ["Enabled"],
    ),
    (
        "CKV_CKPT_13",
        "PostgreSQL public network access is disabled by default",
        "Microsoft.DBforPostgreSQL/flexibleServers",
        "properties/network/publicNetworkAccess",
        ["Disabled"],
    ),
]

checks = [_Require(*rule) for rule in _RULES] + [_KeyIsWrapOnlyAndRotates()]
