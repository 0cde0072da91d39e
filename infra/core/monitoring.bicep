// Log Analytics + workspace-based Application Insights, both with local (key) authentication disabled: the host
// sends telemetry with the app identity (APPLICATIONINSIGHTS_AUTHENTICATION_STRING, Monitoring Metrics Publisher).
param logAnalyticsName string
param applicationInsightsName string
param location string = resourceGroup().location
param tags object = {}
param retentionInDays int = 30

resource logAnalytics 'Microsoft.OperationalInsights/workspaces@2023-09-01' = {
  name: logAnalyticsName
  location: location
  tags: tags
  properties: {
    sku: {
      name: 'PerGB2018'
    }
    retentionInDays: retentionInDays
    features: {
      disableLocalAuth: true
      enableLogAccessUsingOnlyResourcePermissions: true
    }
  }
}

resource applicationInsights 'Microsoft.Insights/components@2020-02-02' = {
  name: applicationInsightsName
  location: location
  tags: tags
  kind: 'web'
  properties: {
    Application_Type: 'web'
    WorkspaceResourceId: logAnalytics.id
    DisableLocalAuth: true
    IngestionMode: 'LogAnalytics'
  }
}

output logAnalyticsName string = logAnalytics.name
output applicationInsightsName string = applicationInsights.name
output applicationInsightsId string = applicationInsights.id
