// The app's storage account: the host's own storage (timer leases, function keys), the deployment package container,
// the queues (created by the app on first use), and, unless another account is named, the history table.
// Shared-key access is off: everything goes by identity.
param name string
param location string = resourceGroup().location
param tags object = {}
param deploymentContainerName string
@description('The history table, created here; empty when the history lives in another account.')
param historyTableName string = ''

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  // checkov:skip=CKV_AZURE_35: the Flex Consumption app reaches its storage without a virtual network; a default-deny firewall would lock the host out of AzureWebJobsStorage (access is by Entra ID only: shared keys are disabled)
  // checkov:skip=CKV_AZURE_59: same reason: public endpoint, but no key or SAS can be used on it (allowSharedKeyAccess false, no public blob access)
  // checkov:skip=CKV_AZURE_206: locally redundant (three copies in one datacenter) to keep the idle cost minimal; the app survives losing the table (it recreates it and adopts running sessions, docs/operations.md "When Table Storage or ARR is in trouble"), but records of past sessions would be gone: use Standard_ZRS or Standard_GRS if they matter
  name: name
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: {
    name: 'Standard_LRS'
  }
  properties: {
    accessTier: 'Hot'
    allowBlobPublicAccess: false
    allowCrossTenantReplication: false
    allowSharedKeyAccess: false
    defaultToOAuthAuthentication: true
    dnsEndpointType: 'Standard'
    minimumTlsVersion: 'TLS1_2'
    publicNetworkAccess: 'Enabled'
    supportsHttpsTrafficOnly: true
    networkAcls: {
      bypass: 'AzureServices'
      defaultAction: 'Allow'
    }
  }
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: storage
  name: 'default'
  properties: {
    deleteRetentionPolicy: {
      enabled: true
      days: 7
    }
    containerDeleteRetentionPolicy: {
      enabled: true
      days: 7
    }
  }
}

resource deploymentContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobService
  name: deploymentContainerName
  properties: {
    publicAccess: 'None'
  }
}

resource tableService 'Microsoft.Storage/storageAccounts/tableServices@2023-05-01' = {
  parent: storage
  name: 'default'
}

resource historyTable 'Microsoft.Storage/storageAccounts/tableServices/tables@2023-05-01' = if (!empty(historyTableName)) {
  parent: tableService
  name: empty(historyTableName) ? 'unused' : historyTableName
}

output name string = storage.name
output id string = storage.id
output blobEndpoint string = storage.properties.primaryEndpoints.blob
output tableEndpoint string = storage.properties.primaryEndpoints.table
