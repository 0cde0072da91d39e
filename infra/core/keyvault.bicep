// Only when a user insists on an ARR account key: the key lives here, and reaches the app as a Key Vault reference
// (app setting ARR_ACCOUNT_KEY = @Microsoft.KeyVault(...)), resolved with the app identity. Never a plain setting.
param name string
param location string = resourceGroup().location
param tags object = {}
param secretName string
@secure()
param secretValue string
@description('The app identity: Key Vault Secrets User on this one secret.')
param readerPrincipalId string

var keyVaultSecretsUserRoleId = '4633458b-17de-408a-b874-0445c86b69e6' // Key Vault Secrets User

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' = {
  // checkov:skip=CKV_AZURE_109: the Flex Consumption app has no virtual network, and App Service is not a trusted service for Key Vault references: a default-deny firewall would leave ARR_ACCOUNT_KEY unresolved. Access is by Entra ID and RBAC only
  // checkov:skip=CKV_AZURE_189: same reason as CKV_AZURE_109 (public endpoint, RBAC authorization, no access policies)
  // checkov:skip=CKV_AZURE_110: no purge protection: the vault holds only a copy of a key that can be regenerated on the ARR account, and purge protection would block `azd down --purge` and a new `azd up` of the same environment (same vault name) for the retention period. Soft delete stays on (7 days)
  // checkov:skip=CKV_AZURE_42: same reason as CKV_AZURE_110 (soft delete is on; purge protection is not)
  name: name
  location: location
  tags: tags
  properties: {
    tenantId: subscription().tenantId
    sku: {
      family: 'A'
      name: 'standard'
    }
    enableRbacAuthorization: true
    enableSoftDelete: true
    softDeleteRetentionInDays: 7
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      bypass: 'AzureServices'
      defaultAction: 'Allow'
    }
  }
}

resource secret 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = {
  // checkov:skip=CKV_AZURE_41: an ARR account key does not expire by itself; it is rotated on the ARR account, and an expiry date here would only stop the app from starting sessions on that day
  parent: vault
  name: secretName
  properties: {
    value: secretValue
    contentType: 'text/plain'
  }
}

resource secretReader 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(secret.id, readerPrincipalId, keyVaultSecretsUserRoleId)
  scope: secret
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', keyVaultSecretsUserRoleId)
    principalId: readerPrincipalId
    principalType: 'ServicePrincipal'
  }
}

output name string = vault.name
output uri string = vault.properties.vaultUri
