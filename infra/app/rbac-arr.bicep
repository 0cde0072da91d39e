// The existing Remote Rendering account (deployed in that account's resource group): the app identity may create,
// read, extend and stop sessions (Remote Rendering Client), but not convert models (Remote Rendering Administrator).
param principalId string
param arrAccountName string

var remoteRenderingClientRoleId = 'd39065c4-c120-43c9-ab0a-63eed9795f0a' // Remote Rendering Client

resource arrAccount 'Microsoft.MixedReality/remoteRenderingAccounts@2021-01-01' existing = {
  name: arrAccountName
}

resource renderingClient 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(arrAccount.id, principalId, remoteRenderingClientRoleId)
  scope: arrAccount
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', remoteRenderingClientRoleId)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}
