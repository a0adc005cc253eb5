// Azure Cache for Redis for the hot tier. TLS only (non-TLS port off, TLS 1.2),
// Microsoft Entra ID authentication on and access keys off (Basic, Standard and
// Premium all support Entra ID), a custom data access policy for the application
// identity, optional firewall rules or private endpoint, logs to Log Analytics.

@description('Cache name (globally unique).')
param name string

@description('Azure region.')
param location string

@description('Tags applied to every resource.')
param tags object

@description('Basic (no SLA, dev only), Standard (replicated) or Premium (zones, persistence).')
@allowed([
  'Basic'
  'Standard'
  'Premium'
])
param redisSkuName string = 'Standard'

@description('Cache size: 0-6 for Basic/Standard (C0-C6), 1-5 for Premium (P1-P5).')
@minValue(0)
@maxValue(6)
param redisCapacity int = 1

@description('Enabled or Disabled. Disabled = reachable only through a private endpoint.')
@allowed([
  'Enabled'
  'Disabled'
])
param publicNetworkAccess string = 'Disabled'

@description('Public IPv4 addresses allowed by the cache firewall when publicNetworkAccess is Enabled (no rule = any address, still TLS + Entra ID).')
param allowedIpAddresses array = []

@description('Redis ACL of the application identity (custom data access policy).')
param appAccessPolicyPermissions string = '+@read +@write +@keyspace +@scripting +@transaction +@connection -@dangerous -@admin allkeys'

@description('Principal id (object id) of the application\'s managed identity.')
param appPrincipalId string

@description('Display name of the application\'s managed identity (shown as the Redis user alias).')
param appPrincipalName string

@description('Resource id of the Log Analytics workspace for diagnostic settings.')
param logAnalyticsWorkspaceId string

@description('Subnet id for a private endpoint; empty = no private endpoint.')
param privateEndpointSubnetId string = ''

@description('Resource id of the privatelink.redis.cache.windows.net zone; empty = manage DNS yourself.')
param privateDnsZoneId string = ''

resource redis 'Microsoft.Cache/redis@2024-03-01' = {
  name: name
  location: location
  tags: tags
  properties: {
    sku: {
      name: redisSkuName
      family: (redisSkuName == 'Premium') ? 'P' : 'C'
      capacity: redisCapacity
    }
    redisVersion: '6'
    enableNonSslPort: false
    minimumTlsVersion: '1.2'
    publicNetworkAccess: publicNetworkAccess
    disableAccessKeyAuthentication: true
    redisConfiguration: {
      'aad-enabled': 'true'
    }
  }
}

resource firewallRules 'Microsoft.Cache/redis/firewallRules@2024-03-01' = [for (ip, i) in allowedIpAddresses: if (publicNetworkAccess == 'Enabled') {
  parent: redis
  name: 'allow${i}'
  properties: {
    startIP: ip
    endIP: ip
  }
}]

resource appAccessPolicy 'Microsoft.Cache/redis/accessPolicies@2024-03-01' = {
  parent: redis
  name: 'checkpointers'
  properties: {
    permissions: appAccessPolicyPermissions
  }
}

resource appAccessPolicyAssignment 'Microsoft.Cache/redis/accessPolicyAssignments@2024-03-01' = {
  parent: redis
  name: guid(redis.id, appPrincipalId, 'checkpointers')
  properties: {
    accessPolicyName: appAccessPolicy.name
    objectId: appPrincipalId
    objectIdAlias: appPrincipalName
  }
}

resource diagnostics 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: 'to-log-analytics'
  scope: redis
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
    targetResourceId: redis.id
    groupId: 'redisCache'
    privateDnsZoneId: privateDnsZoneId
  }
}

output id string = redis.id
output hostName string = redis.properties.hostName
output sslPort int = redis.properties.sslPort
