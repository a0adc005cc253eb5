// Production: no public network access; every service behind a private endpoint in
// an existing subnet, with the privatelink DNS zones in an existing resource group.
// Zone-redundant PostgreSQL HA, geo-redundant backups, 7-year WORM archive.
// Needs: PG_ADMIN_OBJECT_ID, PG_ADMIN_NAME (an Entra ID group of DBAs),
//        PRIVATE_ENDPOINT_SUBNET_ID, PRIVATE_DNS_ZONES_RG_ID (/subscriptions/<id>/resourceGroups/<rg>).
using '../main.bicep'

param namePrefix = 'ckpt'
param env = 'prod'

param publicNetworkAccess = 'Disabled'
param privateEndpointSubnetId = readEnvironmentVariable('PRIVATE_ENDPOINT_SUBNET_ID')
param privateDnsZoneIds = {
  vault: '${readEnvironmentVariable('PRIVATE_DNS_ZONES_RG_ID')}/providers/Microsoft.Network/privateDnsZones/privatelink.vaultcore.azure.net'
  blob: '${readEnvironmentVariable('PRIVATE_DNS_ZONES_RG_ID')}/providers/Microsoft.Network/privateDnsZones/privatelink.blob.core.windows.net'
  redisCache: '${readEnvironmentVariable('PRIVATE_DNS_ZONES_RG_ID')}/providers/Microsoft.Network/privateDnsZones/privatelink.redis.cache.windows.net'
  postgresqlServer: '${readEnvironmentVariable('PRIVATE_DNS_ZONES_RG_ID')}/providers/Microsoft.Network/privateDnsZones/privatelink.postgres.database.azure.com'
}

param logRetentionDays = 365
param keyVaultSoftDeleteRetentionDays = 90
param keyVaultRoleScope = 'vault'
param keySize = 3072
param keyRotateAfter = 'P1Y'
param keyExpiresAfter = 'P2Y'

param storageSkuName = 'Standard_RAGRS'
param immutabilityPeriodDays = 2555
param blobSoftDeleteRetentionDays = 30
param coolAfterDays = 30
param archiveAfterDays = 180

param redisSkuName = 'Standard'
param redisCapacity = 1

param postgresSkuName = 'Standard_D2ds_v5'
param postgresSkuTier = 'GeneralPurpose'
param postgresStorageSizeGB = 128
param postgresBackupRetentionDays = 35
param postgresGeoRedundantBackup = true
param postgresHighAvailabilityMode = 'ZoneRedundant'
param postgresEntraAdminObjectId = readEnvironmentVariable('PG_ADMIN_OBJECT_ID')
param postgresEntraAdminName = readEnvironmentVariable('PG_ADMIN_NAME')
param postgresEntraAdminPrincipalType = 'Group'
