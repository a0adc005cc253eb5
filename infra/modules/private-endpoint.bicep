// One private endpoint for one sub-resource (groupId) of a PaaS resource, with an
// optional private DNS zone group so the service's hostname resolves to the endpoint.

@description('Private endpoint name.')
param name string

@description('Azure region (the subnet\'s region).')
param location string

@description('Tags applied to the endpoint.')
param tags object

@description('Resource id of the subnet the endpoint is placed in.')
param subnetId string

@description('Resource id of the resource the endpoint connects to.')
param targetResourceId string

@description('Private link sub-resource: vault, blob, redisCache or postgresqlServer.')
@allowed([
  'vault'
  'blob'
  'redisCache'
  'postgresqlServer'
])
param groupId string

@description('Resource id of the matching privatelink DNS zone; empty = manage DNS yourself.')
param privateDnsZoneId string = ''

resource endpoint 'Microsoft.Network/privateEndpoints@2023-11-01' = {
  name: name
  location: location
  tags: tags
  properties: {
    subnet: {
      id: subnetId
    }
    privateLinkServiceConnections: [
      {
        name: name
        properties: {
          privateLinkServiceId: targetResourceId
          groupIds: [
            groupId
          ]
        }
      }
    ]
  }
}

resource dnsZoneGroup 'Microsoft.Network/privateEndpoints/privateDnsZoneGroups@2023-11-01' = if (!empty(privateDnsZoneId)) {
  parent: endpoint
  name: 'default'
  properties: {
    privateDnsZoneConfigs: [
      {
        name: groupId
        properties: {
          privateDnsZoneId: privateDnsZoneId
        }
      }
    ]
  }
}

output id string = endpoint.id
