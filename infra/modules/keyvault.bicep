// Key Vault holding the key-encryption key (KEK) that wraps the package's data keys.
// RBAC authorization only (no access policies), soft delete + purge protection,
// firewall default deny, HSM-backed RSA key restricted to wrapKey/unwrapKey with a
// rotation policy, audit logs to Log Analytics, optional private endpoint, and the
// application identity's "Key Vault Crypto User" role assignment.

@description('Vault name (3-24 characters, globally unique).')
@minLength(3)
@maxLength(24)
param name string

@description('Azure region.')
param location string

@description('Tags applied to every resource.')
param tags object

@description('Enabled or Disabled. Disabled = reachable only through a private endpoint.')
@allowed([
  'Enabled'
  'Disabled'
])
param publicNetworkAccess string = 'Disabled'

@description('Public IPv4 addresses or CIDR ranges allowed through the firewall (only used when publicNetworkAccess is Enabled).')
param allowedIpAddresses array = []

@description('Days a deleted vault or key stays recoverable (7-90).')
@minValue(7)
@maxValue(90)
param softDeleteRetentionInDays int = 90

@description('Name of the KEK (CHECKPOINTERS_KEYVAULT_KEY).')
param keyName string

@description('RSA key size in bits.')
@allowed([
  2048
  3072
  4096
])
param keySize int = 3072

@description('ISO 8601 duration after which each key version expires (the rotation policy stamps it on every new version).')
param keyExpiresAfter string = 'P2Y'

@description('ISO 8601 duration after creation at which Key Vault creates a new key version.')
param keyRotateAfter string = 'P1Y'

@description('ISO 8601 duration before expiry at which Key Vault emits a near-expiry event.')
param keyNotifyBeforeExpiry string = 'P30D'

@description('Principal id (object id) of the application\'s managed identity.')
param appPrincipalId string

@description('Scope of the Key Vault Crypto User assignment: the whole vault, or the KEK only.')
@allowed([
  'vault'
  'key'
])
param appRoleScope string = 'vault'

@description('Resource id of the Log Analytics workspace for diagnostic settings.')
param logAnalyticsWorkspaceId string

@description('Subnet id for a private endpoint; empty = no private endpoint.')
param privateEndpointSubnetId string = ''

@description('Resource id of the privatelink.vaultcore.azure.net zone; empty = manage DNS yourself.')
param privateDnsZoneId string = ''

// Key Vault Crypto User: keys/read (the public JWK), wrapKey, unwrapKey, encrypt, decrypt, sign, verify.
var keyVaultCryptoUserRoleId = '12338af0-0e69-4776-bea7-57ae8d297424'

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' = {
  name: name
  location: location
  tags: tags
  properties: {
    tenantId: subscription().tenantId
    sku: {
      family: 'A'
      name: 'premium'
    }
    enableRbacAuthorization: true
    enableSoftDelete: true
    softDeleteRetentionInDays: softDeleteRetentionInDays
    enablePurgeProtection: true
    enabledForDeployment: false
    enabledForDiskEncryption: false
    enabledForTemplateDeployment: false
    publicNetworkAccess: publicNetworkAccess
    networkAcls: {
      defaultAction: 'Deny'
      bypass: 'AzureServices'
      ipRules: [for ip in allowedIpAddresses: {
        value: ip
      }]
      virtualNetworkRules: []
    }
  }
}

resource kek 'Microsoft.KeyVault/vaults/keys@2023-07-01' = {
  parent: vault
  name: keyName
  tags: tags
  properties: {
    kty: 'RSA-HSM'
    keySize: keySize
    keyOps: [
      'wrapKey'
      'unwrapKey'
    ]
    attributes: {
      enabled: true
    }
    rotationPolicy: {
      attributes: {
        expiryTime: keyExpiresAfter
      }
      lifetimeActions: [
        {
          trigger: {
            timeAfterCreate: keyRotateAfter
          }
          action: {
            type: 'rotate'
          }
        }
        {
          trigger: {
            timeBeforeExpiry: keyNotifyBeforeExpiry
          }
          action: {
            type: 'notify'
          }
        }
      ]
    }
  }
}

resource diagnostics 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: 'to-log-analytics'
  scope: vault
  properties: {
    workspaceId: logAnalyticsWorkspaceId
    logs: [
      {
        categoryGroup: 'allLogs'
        enabled: true
      }
    ]
    metrics: [
      {
        category: 'AllMetrics'
        enabled: true
      }
    ]
  }
}

resource appOnVault 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (appRoleScope == 'vault') {
  name: guid(vault.id, appPrincipalId, keyVaultCryptoUserRoleId)
  scope: vault
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', keyVaultCryptoUserRoleId)
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
  }
}

resource appOnKey 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (appRoleScope == 'key') {
  name: guid(kek.id, appPrincipalId, keyVaultCryptoUserRoleId)
  scope: kek
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', keyVaultCryptoUserRoleId)
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
  }
}

module privateEndpoint 'private-endpoint.bicep' = if (!empty(privateEndpointSubnetId)) {
  name: '${name}-pe'
  params: {
    name: 'pe-${name}'
    location: location
    tags: tags
    subnetId: privateEndpointSubnetId
    targetResourceId: vault.id
    groupId: 'vault'
    privateDnsZoneId: privateDnsZoneId
  }
}

output id string = vault.id
output name string = vault.name
output uri string = vault.properties.vaultUri
output keyName string = kek.name
output keyUri string = kek.properties.keyUri
