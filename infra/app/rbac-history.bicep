// The history table's account (deployed in that account's resource group): the app identity reads and writes the
// table, and creates it again if it is lost (Storage Table Data Contributor). Whoever ran azd may read it.
param principalId string
param storageAccountName string
@description('Object id of whoever runs azd: Storage Table Data Reader, to look at the history. Empty: nobody.')
param userPrincipalId string = ''

var storageTableDataContributorRoleId = '0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3' // Storage Table Data Contributor
var storageTableDataReaderRoleId = '76199698-9eea-4c19-bc75-cec21354c6b6' // Storage Table Data Reader

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

resource tableDataContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage.id, principalId, storageTableDataContributorRoleId)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageTableDataContributorRoleId)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}

resource userTableDataReader 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(userPrincipalId)) {
  name: guid(storage.id, userPrincipalId, storageTableDataReaderRoleId)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageTableDataReaderRoleId)
    principalId: userPrincipalId
  }
}
