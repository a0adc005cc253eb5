// Azure Database for PostgreSQL Flexible Server for the durable tier. Microsoft
// Entra ID authentication only (password authentication off, so no admin password
// exists anywhere), TLS 1.2+ enforced, backups with optional geo-redundancy, high
// availability as a parameter, connection/checkpoint logging, logs to Log
// Analytics, optional firewall rules or private endpoint.
// The application identity's database role is created with SQL after deployment
// (pgaadauth_create_principal); see infra/README.md.

@description('Server name (globally unique, lowercase letters, digits and hyphens).')
@minLength(3)
@maxLength(63)
param name string

@description('Azure region.')
param location string

@description('Tags applied to every resource.')
param tags object

@description('Compute SKU, e.g. Standard_B1ms (Burstable) or Standard_D2ds_v5 (GeneralPurpose).')
param postgresSkuName string = 'Standard_D2ds_v5'

@description('Compute tier matching postgresSkuName. High availability needs GeneralPurpose or MemoryOptimized.')
@allowed([
  'Burstable'
  'GeneralPurpose'
  'MemoryOptimized'
])
param postgresSkuTier string = 'GeneralPurpose'

@description('PostgreSQL major version.')
@allowed([
  '14'
  '15'
  '16'
])
param postgresVersion string = '16'

@description('Storage size in GiB (grows automatically).')
param storageSizeGB int = 128

@description('Days of point-in-time-restore backups (7-35).')
@minValue(7)
@maxValue(35)
param backupRetentionDays int = 35

@description('Keep backups in the paired region too. Can only be chosen when the server is created.')
param geoRedundantBackup bool = true

@description('Disabled, SameZone or ZoneRedundant (standby replica with automatic failover).')
@allowed([
  'Disabled'
  'SameZone'
  'ZoneRedundant'
])
param highAvailabilityMode string = 'ZoneRedundant'

@description('Enabled or Disabled. Disabled = reachable only through a private endpoint.')
@allowed([
  'Enabled'
  'Disabled'
])
param publicNetworkAccess string = 'Disabled'

@description('Public IPv4 addresses allowed by the server firewall when publicNetworkAccess is Enabled.')
param allowedIpAddresses array = []

@description('Database the package uses.')
param databaseName string = 'checkpointers'

@description('Object id of the Entra ID user, group or service principal that administers the server (creates the application role).')
param entraAdminObjectId string

@description('Display name of that Entra ID principal (the PostgreSQL role name it logs in as).')
param entraAdminName string

@description('Kind of that Entra ID principal.')
@allowed([
  'User'
  'Group'
  'ServicePrincipal'
])
param entraAdminPrincipalType string = 'Group'

@description('Resource id of the Log Analytics workspace for diagnostic settings.')
param logAnalyticsWorkspaceId string

@description('Subnet id for a private endpoint; empty = no private endpoint.')
param privateEndpointSubnetId string = ''

@description('Resource id of the privatelink.postgres.database.azure.com zone; empty = manage DNS yourself.')
param privateDnsZoneId string = ''

// Server parameters. Applied one at a time: the server rejects concurrent updates.
var serverParameters = [
  {
    name: 'require_secure_transport'
    value: 'on'
  }
  {
    name: 'ssl_min_protocol_version'
    value: 'TLSv1.2'
  }
  {
    name: 'log_connections'
    value: 'on'
  }
  {
    name: 'log_disconnections'
    value: 'on'
  }
  {
    name: 'log_checkpoints'
    value: 'on'
  }
  {
    name: 'connection_throttle.enable'
    value: 'on'
  }
]

resource server 'Microsoft.DBforPostgreSQL/flexibleServers@2024-08-01' = {
  name: name
  location: location
  tags: tags
  sku: {
    name: postgresSkuName
    tier: postgresSkuTier
  }
  properties: {
    version: postgresVersion
    authConfig: {
      activeDirectoryAuth: 'Enabled'
      passwordAuth: 'Disabled'
      tenantId: subscription().tenantId
    }
    storage: {
      storageSizeGB: storageSizeGB
      autoGrow: 'Enabled'
    }
    backup: {
      backupRetentionDays: backupRetentionDays
      geoRedundantBackup: geoRedundantBackup ? 'Enabled' : 'Disabled'
    }
    highAvailability: {
      mode: highAvailabilityMode
    }
    network: {
      publicNetworkAccess: publicNetworkAccess
    }
  }
}

resource entraAdmin 'Microsoft.DBforPostgreSQL/flexibleServers/administrators@2024-08-01' = {
  parent: server
  name: entraAdminObjectId
  properties: {
    principalType: entraAdminPrincipalType
    principalName: entraAdminName
    tenantId: subscription().tenantId
  }
}

@batchSize(1)
resource configurations 'Microsoft.DBforPostgreSQL/flexibleServers/configurations@2024-08-01' = [for p in serverParameters: {
  parent: server
  name: p.name
  properties: {
    value: p.value
    source: 'user-override'
  }
  dependsOn: [
    entraAdmin
  ]
}]

resource database 'Microsoft.DBforPostgreSQL/flexibleServers/databases@2024-08-01' = {
  parent: server
  name: databaseName
  properties: {
    charset: 'UTF8'
    collation: 'en_US.utf8'
  }
  dependsOn: [
    configurations
  ]
}

resource firewallRules 'Microsoft.DBforPostgreSQL/flexibleServers/firewallRules@2024-08-01' = [for (ip, i) in allowedIpAddresses: if (publicNetworkAccess == 'Enabled') {
  parent: server
  name: 'allow-${i}'
  properties: {
    startIpAddress: ip
    endIpAddress: ip
  }
  dependsOn: [
    database
  ]
}]

resource diagnostics 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: 'to-log-analytics'
  scope: server
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

module privateEndpoint 'private-endpoint.bicep' = if (!empty(privateEndpointSubnetId)) {
  name: '${name}-pe'
  params: {
    name: 'pe-${name}'
    location: location
    tags: tags
    subnetId: privateEndpointSubnetId
    targetResourceId: server.id
    groupId: 'postgresqlServer'
    privateDnsZoneId: privateDnsZoneId
  }
  dependsOn: [
    database
  ]
}

output id string = server.id
output fqdn string = server.properties.fullyQualifiedDomainName
output databaseName string = database.name
