// checkpointers: the Azure deployment the package expects, in one resource group.
//
//   Key Vault (KEK, wrap/unwrap)  Storage (archive tier)  Redis (hot tier)
//   PostgreSQL Flexible Server (durable tier)  Log Analytics  managed identity
//
// Deploy:  az deployment group create -g <rg> -f infra/main.bicep -p infra/parameters/<env>.bicepparam
// Outputs map one to one to the package's configuration; see infra/README.md.

targetScope = 'resourceGroup'

// ---------------------------------------------------------------- general

@description('Short lowercase prefix for resource names (letters and digits).')
@minLength(2)
@maxLength(8)
param namePrefix string = 'ckpt'

@description('Environment name, part of every resource name.')
@allowed([
  'dev'
  'test'
  'prod'
])
param env string = 'prod'

@description('Azure region (defaults to the resource group\'s).')
param location string = resourceGroup().location

@description('Tags applied to every resource.')
param tags object = {
  application: 'checkpointers'
  environment: env
}

// ---------------------------------------------------------------- network

@description('Public network access of Key Vault, Storage, Redis and PostgreSQL. Disabled (the default) needs privateEndpointSubnetId.')
@allowed([
  'Enabled'
  'Disabled'
])
param publicNetworkAccess string = 'Disabled'

@description('Public IPv4 addresses (single addresses) let through every firewall when publicNetworkAccess is Enabled.')
param allowedIpAddresses array = []

@description('Subnet id for private endpoints of all four services; empty = none.')
param privateEndpointSubnetId string = ''

@description('Private DNS zone ids by private link group: keys vault, blob, redisCache, postgresqlServer. Missing keys = manage that DNS yourself.')
param privateDnsZoneIds object = {}

// ---------------------------------------------------------------- monitoring

@description('Days the Log Analytics workspace keeps logs.')
@minValue(30)
@maxValue(730)
param logRetentionDays int = 365

// ---------------------------------------------------------------- key vault

@description('Name of the RSA key that wraps data keys (CHECKPOINTERS_KEYVAULT_KEY).')
param keyName string = 'checkpointers-kek'

@description('RSA key size in bits.')
@allowed([
  2048
  3072
  4096
])
param keySize int = 3072

@description('ISO 8601 duration after which each key version expires.')
param keyExpiresAfter string = 'P2Y'

@description('ISO 8601 duration after creation at which Key Vault rotates the key (creates a new version).')
param keyRotateAfter string = 'P1Y'

@description('Days a deleted vault or key stays recoverable (7-90).')
@minValue(7)
@maxValue(90)
param keyVaultSoftDeleteRetentionDays int = 90

@description('Scope of the identity\'s Key Vault Crypto User role: vault (covers keys added later, e.g. per-tenant keys) or key (the KEK only).')
@allowed([
  'vault'
  'key'
])
param keyVaultRoleScope string = 'vault'

// ---------------------------------------------------------------- storage

@description('Archive storage redundancy (the archive access tier needs LRS, GRS or RA-GRS).')
@allowed([
  'Standard_LRS'
  'Standard_GRS'
  'Standard_RAGRS'
])
param storageSkuName string = 'Standard_GRS'

@description('Archive container name.')
param archiveContainerName string = 'checkpointers-archive'

@description('Days each archived blob version is immutable (WORM). 2555 = 7 years.')
@minValue(1)
@maxValue(146000)
param immutabilityPeriodDays int = 2555

@description('Days a deleted blob or container stays recoverable.')
@minValue(1)
@maxValue(365)
param blobSoftDeleteRetentionDays int = 30

@description('Days after the last write at which an archived blob moves to the cool tier.')
param coolAfterDays int = 30

@description('Days after the last write at which an archived blob moves to the archive tier.')
param archiveAfterDays int = 180

// ---------------------------------------------------------------- redis

@description('Redis SKU: Basic, Standard or Premium.')
@allowed([
  'Basic'
  'Standard'
  'Premium'
])
param redisSkuName string = 'Standard'

@description('Redis size (C0-C6 for Basic/Standard, P1-P5 for Premium).')
@minValue(0)
@maxValue(6)
param redisCapacity int = 1

@description('Redis ACL granted to the application identity.')
param redisAccessPolicyPermissions string = '+@read +@write +@keyspace +@scripting +@transaction +@connection -@dangerous -@admin allkeys'

// ---------------------------------------------------------------- postgres

@description('PostgreSQL compute SKU.')
param postgresSkuName string = 'Standard_D2ds_v5'

@description('PostgreSQL compute tier (HA needs GeneralPurpose or MemoryOptimized).')
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

@description('PostgreSQL storage in GiB.')
param postgresStorageSizeGB int = 128

@description('Days of point-in-time-restore backups (7-35).')
@minValue(7)
@maxValue(35)
param postgresBackupRetentionDays int = 35

@description('Geo-redundant backups (only settable at server creation).')
param postgresGeoRedundantBackup bool = true

@description('High availability: Disabled, SameZone or ZoneRedundant.')
@allowed([
  'Disabled'
  'SameZone'
  'ZoneRedundant'
])
param postgresHighAvailabilityMode string = 'ZoneRedundant'

@description('Database name used in the PostgreSQL URL.')
param postgresDatabaseName string = 'checkpointers'

@description('Object id of the Entra ID principal that administers PostgreSQL.')
param postgresEntraAdminObjectId string

@description('Display name of that principal (its PostgreSQL role name).')
param postgresEntraAdminName string

@description('User, Group or ServicePrincipal.')
@allowed([
  'User'
  'Group'
  'ServicePrincipal'
])
param postgresEntraAdminPrincipalType string = 'Group'

// ---------------------------------------------------------------- names

var suffix = take(uniqueString(subscription().id, resourceGroup().id, namePrefix, env), 6)
var identityName = 'id-${namePrefix}-${env}'
var workspaceName = 'log-${namePrefix}-${env}-${suffix}'
var keyVaultName = take('kv-${namePrefix}-${env}-${suffix}', 24)
var storageAccountName = take(toLower('st${namePrefix}${env}${suffix}'), 24)
var redisName = 'redis-${namePrefix}-${env}-${suffix}'
var postgresName = 'psql-${namePrefix}-${env}-${suffix}'

// ---------------------------------------------------------------- resources

resource appIdentity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: identityName
  location: location
  tags: tags
}

module monitoring 'modules/monitoring.bicep' = {
  name: 'monitoring'
  params: {
    name: workspaceName
    location: location
    tags: tags
    retentionInDays: logRetentionDays
  }
}

module keyVault 'modules/keyvault.bicep' = {
  name: 'keyvault'
  params: {
    name: keyVaultName
    location: location
    tags: tags
    publicNetworkAccess: publicNetworkAccess
    allowedIpAddresses: allowedIpAddresses
    softDeleteRetentionInDays: keyVaultSoftDeleteRetentionDays
    keyName: keyName
    keySize: keySize
    keyExpiresAfter: keyExpiresAfter
    keyRotateAfter: keyRotateAfter
    appPrincipalId: appIdentity.properties.principalId
    appRoleScope: keyVaultRoleScope
    logAnalyticsWorkspaceId: monitoring.outputs.id
    privateEndpointSubnetId: privateEndpointSubnetId
    privateDnsZoneId: privateDnsZoneIds.?vault ?? ''
  }
}

module storage 'modules/storage.bicep' = {
  name: 'storage'
  params: {
    name: storageAccountName
    location: location
    tags: tags
    storageSkuName: storageSkuName
    publicNetworkAccess: publicNetworkAccess
    allowedIpAddresses: allowedIpAddresses
    containerName: archiveContainerName
    immutabilityPeriodDays: immutabilityPeriodDays
    softDeleteRetentionDays: blobSoftDeleteRetentionDays
    coolAfterDays: coolAfterDays
    archiveAfterDays: archiveAfterDays
    appPrincipalId: appIdentity.properties.principalId
    logAnalyticsWorkspaceId: monitoring.outputs.id
    privateEndpointSubnetId: privateEndpointSubnetId
    privateDnsZoneId: privateDnsZoneIds.?blob ?? ''
  }
}

module redis 'modules/redis.bicep' = {
  name: 'redis'
  params: {
    name: redisName
    location: location
    tags: tags
    redisSkuName: redisSkuName
    redisCapacity: redisCapacity
    publicNetworkAccess: publicNetworkAccess
    allowedIpAddresses: allowedIpAddresses
    appAccessPolicyPermissions: redisAccessPolicyPermissions
    appPrincipalId: appIdentity.properties.principalId
    appPrincipalName: appIdentity.name
    logAnalyticsWorkspaceId: monitoring.outputs.id
    privateEndpointSubnetId: privateEndpointSubnetId
    privateDnsZoneId: privateDnsZoneIds.?redisCache ?? ''
  }
}

module postgres 'modules/postgres.bicep' = {
  name: 'postgres'
  params: {
    name: postgresName
    location: location
    tags: tags
    postgresSkuName: postgresSkuName
    postgresSkuTier: postgresSkuTier
    postgresVersion: postgresVersion
    storageSizeGB: postgresStorageSizeGB
    backupRetentionDays: postgresBackupRetentionDays
    geoRedundantBackup: postgresGeoRedundantBackup
    highAvailabilityMode: postgresHighAvailabilityMode
    publicNetworkAccess: publicNetworkAccess
    allowedIpAddresses: allowedIpAddresses
    databaseName: postgresDatabaseName
    entraAdminObjectId: postgresEntraAdminObjectId
    entraAdminName: postgresEntraAdminName
    entraAdminPrincipalType: postgresEntraAdminPrincipalType
    logAnalyticsWorkspaceId: monitoring.outputs.id
    privateEndpointSubnetId: privateEndpointSubnetId
    privateDnsZoneId: privateDnsZoneIds.?postgresqlServer ?? ''
  }
}

// ---------------------------------------------------------------- outputs
// Names in CAPITALS are environment variables the package (or azure-identity) reads.

@description('Client id of the managed identity; azure-identity\'s ManagedIdentityCredential/DefaultAzureCredential read it from AZURE_CLIENT_ID.')
output AZURE_CLIENT_ID string = appIdentity.properties.clientId

@description('Key Vault URL for the Key Vault key provider.')
output CHECKPOINTERS_KEYVAULT_URL string = keyVault.outputs.uri

@description('Name of the RSA key used for wrapKey/unwrapKey.')
output CHECKPOINTERS_KEYVAULT_KEY string = keyVault.outputs.keyName

@description('Hot tier URL (rediss = TLS; Entra ID token auth as the managed identity).')
output redisUrl string = 'rediss://${appIdentity.properties.principalId}@${redis.outputs.hostName}:${redis.outputs.sslPort}/0'

@description('Durable tier URL (user = the managed identity\'s PostgreSQL role; Entra ID token as password).')
output postgresUrl string = 'postgresql://${appIdentity.name}@${postgres.outputs.fqdn}/${postgres.outputs.databaseName}?sslmode=require'

@description('Archive tier URL (Azure credential, no connection string).')
output archiveUrl string = '${storage.outputs.blobEndpoint}${storage.outputs.containerName}'

@description('All tiers, hottest first: the list to pass to from_url.')
output tierUrls array = [
  'rediss://${appIdentity.properties.principalId}@${redis.outputs.hostName}:${redis.outputs.sslPort}/0'
  'postgresql://${appIdentity.name}@${postgres.outputs.fqdn}/${postgres.outputs.databaseName}?sslmode=require'
  '${storage.outputs.blobEndpoint}${storage.outputs.containerName}'
]

@description('Managed identity name (also its PostgreSQL role and Redis user alias).')
output identityName string = appIdentity.name

@description('Managed identity principal (object) id: the Redis username for Entra ID auth.')
output identityPrincipalId string = appIdentity.properties.principalId

@description('Key Vault resource id.')
output keyVaultId string = keyVault.outputs.id

@description('Storage account name.')
output storageAccountName string = storage.outputs.name

@description('PostgreSQL server FQDN.')
output postgresFqdn string = postgres.outputs.fqdn

@description('Log Analytics workspace resource id.')
output logAnalyticsWorkspaceId string = monitoring.outputs.id
