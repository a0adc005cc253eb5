// Storage account for the archive tier (completed workflows). Entra ID only (shared
// key and SAS by account key off), HTTPS + TLS 1.2, no public blob access, firewall
// default deny, blob versioning + soft delete, one container with a version-level
// time-based immutability policy (WORM), lifecycle tiering to cool then archive,
// logs to Log Analytics, optional private endpoint, and the application identity's
// "Storage Blob Data Contributor" role on the archive container only.

@description('Storage account name (3-24 lowercase letters and digits, globally unique).')
@minLength(3)
@maxLength(24)
param name string

@description('Azure region.')
param location string

@description('Tags applied to every resource.')
param tags object

@description('Redundancy. The archive access tier needs LRS, GRS or RA-GRS (not ZRS/GZRS).')
@allowed([
  'Standard_LRS'
  'Standard_GRS'
  'Standard_RAGRS'
])
param storageSkuName string = 'Standard_GRS'

@description('Enabled or Disabled. Disabled = reachable only through a private endpoint.')
@allowed([
  'Enabled'
  'Disabled'
])
param publicNetworkAccess string = 'Disabled'

@description('Public IPv4 addresses or CIDR ranges allowed through the firewall (only used when publicNetworkAccess is Enabled).')
param allowedIpAddresses array = []

@description('Archive container name.')
@minLength(3)
@maxLength(63)
param containerName string

@description('Days every blob version stays immutable after it is written (WORM). 2555 days = 7 years.')
@minValue(1)
@maxValue(146000)
param immutabilityPeriodDays int = 2555

@description('Days a deleted blob or container stays recoverable.')
@minValue(1)
@maxValue(365)
param softDeleteRetentionDays int = 30

@description('Days after the last write at which a blob moves to the cool tier.')
@minValue(0)
param coolAfterDays int = 30

@description('Days after the last write at which a blob moves to the archive tier (offline: reading it back needs rehydration).')
@minValue(1)
param archiveAfterDays int = 180

@description('Principal id (object id) of the application\'s managed identity.')
param appPrincipalId string

@description('Resource id of the Log Analytics workspace for diagnostic settings.')
param logAnalyticsWorkspaceId string

@description('Subnet id for a private endpoint; empty = no private endpoint.')
param privateEndpointSubnetId string = ''

@description('Resource id of the privatelink.blob.core.windows.net zone; empty = manage DNS yourself.')
param privateDnsZoneId string = ''

// Storage Blob Data Contributor: read, write, delete blobs and their index tags.
var storageBlobDataContributorRoleId = 'ba92f5b4-2d11-453d-a403-e96b0029c9fe'

resource account 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  name: name
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: {
    name: storageSkuName
  }
  properties: {
    accessTier: 'Hot'
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    allowBlobPublicAccess: false
    allowSharedKeyAccess: false
    defaultToOAuthAuthentication: true
    allowCrossTenantReplication: false
    publicNetworkAccess: publicNetworkAccess
    networkAcls: {
      defaultAction: 'Deny'
      bypass: 'AzureServices'
      ipRules: [for ip in allowedIpAddresses: {
        value: ip
        action: 'Allow'
      }]
      virtualNetworkRules: []
    }
    encryption: {
      keySource: 'Microsoft.Storage'
      requireInfrastructureEncryption: true
      services: {
        blob: {
          enabled: true
          keyType: 'Account'
        }
      }
    }
  }
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: account
  name: 'default'
  properties: {
    isVersioningEnabled: true
    deleteRetentionPolicy: {
      enabled: true
      days: softDeleteRetentionDays
    }
    containerDeleteRetentionPolicy: {
      enabled: true
      days: softDeleteRetentionDays
    }
  }
}

resource container 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobService
  name: containerName
  properties: {
    publicAccess: 'None'
    immutableStorageWithVersioning: {
      enabled: true
    }
  }
}

// Default version-level policy of the container: every new blob version is
// write-protected for immutabilityPeriodDays. Deployed unlocked (ARM cannot lock it);
// lock it once with `az storage container immutability-policy lock` (see README).
resource immutabilityPolicy 'Microsoft.Storage/storageAccounts/blobServices/containers/immutabilityPolicies@2023-05-01' = {
  parent: container
  name: 'default'
  properties: {
    immutabilityPeriodSinceCreationInDays: immutabilityPeriodDays
    allowProtectedAppendWrites: false
  }
}

resource lifecycle 'Microsoft.Storage/storageAccounts/managementPolicies@2023-05-01' = {
  parent: account
  name: 'default'
  properties: {
    policy: {
      rules: [
        {
          name: 'archive-tiering'
          enabled: true
          type: 'Lifecycle'
          definition: {
            filters: {
              blobTypes: [
                'blockBlob'
              ]
              prefixMatch: [
                '${containerName}/'
              ]
            }
            actions: {
              baseBlob: {
                tierToCool: {
                  daysAfterModificationGreaterThan: coolAfterDays
                }
                tierToArchive: {
                  daysAfterModificationGreaterThan: archiveAfterDays
                }
              }
              version: {
                tierToCool: {
                  daysAfterCreationGreaterThan: coolAfterDays
                }
                tierToArchive: {
                  daysAfterCreationGreaterThan: archiveAfterDays
                }
              }
            }
          }
        }
      ]
    }
  }
}

resource accountDiagnostics 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: 'to-log-analytics'
  scope: account
  properties: {
    workspaceId: logAnalyticsWorkspaceId
    metrics: [
      {
        category: 'Transaction'
        enabled: true
      }
    ]
  }
}

resource blobDiagnostics 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: 'to-log-analytics'
  scope: blobService
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
        category: 'Transaction'
        enabled: true
      }
    ]
  }
}

resource appOnContainer 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(container.id, appPrincipalId, storageBlobDataContributorRoleId)
  scope: container
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageBlobDataContributorRoleId)
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
  }
}

module privateEndpoint 'private-endpoint.bicep' = if (!empty(privateEndpointSubnetId)) {
  name: '${name}-pe'
  params: {
    name: 'pe-${name}-blob'
    location: location
    tags: tags
    subnetId: privateEndpointSubnetId
    targetResourceId: account.id
    groupId: 'blob'
    privateDnsZoneId: privateDnsZoneId
  }
}

output id string = account.id
output name string = account.name
output blobEndpoint string = account.properties.primaryEndpoints.blob
output containerName string = container.name
