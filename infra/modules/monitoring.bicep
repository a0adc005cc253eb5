// Log Analytics workspace that receives the diagnostic logs and metrics of every
// resource in this deployment (Key Vault audit events above all).

@description('Workspace name.')
param name string

@description('Azure region.')
param location string

@description('Tags applied to the workspace.')
param tags object

@description('Days the workspace keeps data (30-730).')
@minValue(30)
@maxValue(730)
param retentionInDays int

resource workspace 'Microsoft.OperationalInsights/workspaces@2022-10-01' = {
  name: name
  location: location
  tags: tags
  properties: {
    sku: {
      name: 'PerGB2018'
    }
    retentionInDays: retentionInDays
    features: {
      disableLocalAuth: true
    }
  }
}

output id string = workspace.id
output name string = workspace.name
