// Development: public endpoints behind IP firewalls (no VNet needed), smallest SKUs,
// no HA or geo backups, and a 1-day immutability period so test data can be removed.
// Needs: PG_ADMIN_OBJECT_ID, PG_ADMIN_NAME, DEV_ALLOWED_IP (your public IPv4).
using '../main.bicep'

param namePrefix = 'ckpt'
param env = 'dev'

param publicNetworkAccess = 'Enabled'
param allowedIpAddresses = [
  readEnvironmentVariable('DEV_ALLOWED_IP')
]

param logRetentionDays = 30
param keyVaultSoftDeleteRetentionDays = 7

param storageSkuName = 'Standard_LRS'
param immutabilityPeriodDays = 1
param blobSoftDeleteRetentionDays = 7

param redisSkuName = 'Basic'
param redisCapacity = 0

param postgresSkuName = 'Standard_B1ms'
param postgresSkuTier = 'Burstable'
param postgresStorageSizeGB = 32
param postgresBackupRetentionDays = 7
param postgresGeoRedundantBackup = false
param postgresHighAvailabilityMode = 'Disabled'
param postgresEntraAdminObjectId = readEnvironmentVariable('PG_ADMIN_OBJECT_ID')
param postgresEntraAdminName = readEnvironmentVariable('PG_ADMIN_NAME')
param postgresEntraAdminPrincipalType = 'User'
