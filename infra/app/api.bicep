// The function app: a Linux app on a Flex Consumption (FC1) plan, Python 3.11, running as the user-assigned identity.
// The deployment package sits in a blob container reached by that identity; the host's storage and telemetry go by
// identity too (no connection string, no key).
param name string
param planName string
param location string = resourceGroup().location
param tags object = {}
param identityId string
param identityClientId string
param storageAccountName string
param deploymentContainerName string
param applicationInsightsName string
@description('The app\'s own settings (ARR_*), merged with the host settings below.')
param appSettings object
param instanceMemoryMB int = 2048
param maximumInstanceCount int = 40
param alwaysReadyInstances int = 0
param pythonVersion string = '3.11'

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

resource applicationInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: applicationInsightsName
}

// Host and runtime settings: identity-based AzureWebJobsStorage (blobs: timer leases and function keys; queues:
// the queue triggers of the session watcher and the notifications) and host-based telemetry with Entra ID
// authentication. No FUNCTIONS_WORKER_RUNTIME or FUNCTIONS_EXTENSION_VERSION: Flex Consumption takes the runtime from
// functionAppConfig.runtime. Written as name/value pairs, as tools that read app settings from Bicep expect.
var hostSettings = [
  {
    name: 'AzureWebJobsStorage__credential'
    value: 'managedidentity'
  }
  {
    name: 'AzureWebJobsStorage__clientId'
    value: identityClientId
  }
  {
    name: 'AzureWebJobsStorage__blobServiceUri'
    value: storage.properties.primaryEndpoints.blob
  }
  {
    name: 'AzureWebJobsStorage__queueServiceUri'
    value: storage.properties.primaryEndpoints.queue
  }
  {
    name: 'APPLICATIONINSIGHTS_CONNECTION_STRING'
    value: applicationInsights.properties.ConnectionString
  }
  {
    name: 'APPLICATIONINSIGHTS_AUTHENTICATION_STRING'
    value: 'ClientId=${identityClientId};Authorization=AAD'
  }
]

// The app's own settings (ARR_*), from main.bicep.
var appSettingList = [for setting in items(appSettings): {
  name: setting.key
  value: setting.value
}]

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  // checkov:skip=CKV_AZURE_225: single-zone by default, like the LRS storage next to it: a session manager that ARR itself outlives (a missed cleanup run is caught by the next); a production deployment can set zoneRedundant here with zone-redundant storage
  name: planName
  location: location
  tags: tags
  kind: 'functionapp'
  sku: {
    name: 'FC1'
    tier: 'FlexConsumption'
  }
  properties: {
    reserved: true
  }
}

resource site 'Microsoft.Web/sites@2024-04-01' = {
  // checkov:skip=CKV_AZURE_17: callers present no client certificate; they authenticate with function keys over TLS 1.2
  // checkov:skip=CKV_AZURE_212: Flex Consumption has no minimum instance count to set: instances come per execution (alwaysReadyInstances keeps some warm)
  // checkov:skip=CKV_AZURE_213: Flex Consumption does not support the App Service health check (GET /api/health is there for your own monitor)
  // checkov:skip=CKV_AZURE_222: the API is called from Logic Apps and Power Automate over the internet; it has no virtual network to hide in
  name: name
  location: location
  tags: union(tags, { 'azd-service-name': 'api' })
  kind: 'functionapp,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identityId}': {}
    }
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    publicNetworkAccess: 'Enabled'
    clientCertEnabled: false
    keyVaultReferenceIdentity: identityId
    siteConfig: {
      minTlsVersion: '1.2'
      scmMinTlsVersion: '1.2'
      ftpsState: 'Disabled'
      http20Enabled: true
      remoteDebuggingEnabled: false
      appSettings: concat(hostSettings, appSettingList)
    }
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: '${storage.properties.primaryEndpoints.blob}${deploymentContainerName}'
          authentication: {
            type: 'UserAssignedIdentity'
            userAssignedIdentityResourceId: identityId
          }
        }
      }
      scaleAndConcurrency: {
        instanceMemoryMB: instanceMemoryMB
        maximumInstanceCount: maximumInstanceCount
        alwaysReady: (alwaysReadyInstances > 0) ? [
          {
            name: 'http'
            instanceCount: alwaysReadyInstances
          }
        ] : []
      }
      runtime: {
        name: 'python'
        version: pythonVersion
      }
    }
  }
}

// No FTP and no basic-auth deployment: azd deploys with an Entra ID token.
resource ftpCredentials 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: site
  name: 'ftp'
  properties: {
    allow: false
  }
}

resource scmCredentials 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: site
  name: 'scm'
  properties: {
    allow: false
  }
}

output name string = site.name
output id string = site.id
output uri string = 'https://${site.properties.defaultHostName}'
