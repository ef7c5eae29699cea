// Role assignments, all at resource scope (least privilege: nothing at resource-group or subscription scope).
//
// The app's identity can sign, decrypt and wrap with Key Vault keys but not create, import or delete them; it can
// read secrets (for Key Vault references) but not write them. Creating the CA key and writing the chain and the
// wrapped RA key is the admin's job (`azscep ca init` with the admin's own credential), so the deploying admin gets
// Crypto Officer on the vault and Table Data Contributor on the storage account.
//
// Built-in role definition IDs (docs: "Azure built-in roles"); internal/config/deploy_test.go checks them.

@description('Storage account holding host storage, the deployment container and the CA tables.')
param storageAccountName string

@description('Key Vault holding the CA key, the KEK and the static challenge secret.')
param keyVaultName string

@description('Application Insights component the app sends telemetry to with Entra authentication.')
param applicationInsightsName string

@description('Principal (object) ID of the app\'s user-assigned managed identity.')
param identityPrincipalId string

@description('Object ID of the deploying admin (AZURE_PRINCIPAL_ID); empty skips the admin assignments.')
param adminPrincipalId string = ''

@description('Kind of principal adminPrincipalId is.')
@allowed([
  'User'
  'ServicePrincipal'
  'Group'
])
param adminPrincipalType string = 'User'

var roleIds = {
  keyVaultCryptoUser: '12338af0-0e69-4776-bea7-57ae8d297424'
  keyVaultCryptoOfficer: '14b46e9e-c2b7-41b4-b07b-48a6ebf60603'
  keyVaultSecretsUser: '4633458b-17de-408a-b874-0445c86b69e6'
  keyVaultSecretsOfficer: 'b86a8fe4-44ce-4948-aee5-eccb2c155cd7'
  storageBlobDataOwner: 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b'
  storageTableDataContributor: '0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3'
  storageQueueDataContributor: '974c5e8b-45b9-4653-ba55-5f855dd0fb88'
  monitoringMetricsPublisher: '3913510d-42f4-4e42-8a64-420c390055eb'
}

// App identity: host storage (blob leases, timer monitor, deployment package) plus the CA tables; queues are used
// by the Functions host.
var appStorageRoles = [
  roleIds.storageBlobDataOwner
  roleIds.storageTableDataContributor
  roleIds.storageQueueDataContributor
]

// App identity: CA key signatures, RA key unwrap; Key Vault references (static challenge).
var appVaultRoles = [
  roleIds.keyVaultCryptoUser
  roleIds.keyVaultSecretsUser
]

// App identity: Entra-authenticated telemetry ingestion.
var appMonitoringRoles = [
  roleIds.monitoringMetricsPublisher
]

// Admin: `azscep ca init|import|rotate-ra` create keys and write the chain and RA envelope to the tables; the
// secrets role lets the admin read and rotate the static challenge.
var adminVaultRoles = [
  roleIds.keyVaultCryptoOfficer
  roleIds.keyVaultSecretsOfficer
]

var adminStorageRoles = [
  roleIds.storageTableDataContributor
]

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' existing = {
  name: keyVaultName
}

resource appInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: applicationInsightsName
}

resource appStorage 'Microsoft.Authorization/roleAssignments@2022-04-01' = [
  for roleId in appStorageRoles: {
    name: guid(storage.id, identityPrincipalId, roleId)
    scope: storage
    properties: {
      roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleId)
      principalId: identityPrincipalId
      principalType: 'ServicePrincipal'
    }
  }
]

resource appVault 'Microsoft.Authorization/roleAssignments@2022-04-01' = [
  for roleId in appVaultRoles: {
    name: guid(vault.id, identityPrincipalId, roleId)
    scope: vault
    properties: {
      roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleId)
      principalId: identityPrincipalId
      principalType: 'ServicePrincipal'
    }
  }
]

resource appMonitoring 'Microsoft.Authorization/roleAssignments@2022-04-01' = [
  for roleId in appMonitoringRoles: {
    name: guid(appInsights.id, identityPrincipalId, roleId)
    scope: appInsights
    properties: {
      roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleId)
      principalId: identityPrincipalId
      principalType: 'ServicePrincipal'
    }
  }
]

resource adminVault 'Microsoft.Authorization/roleAssignments@2022-04-01' = [
  for roleId in (empty(adminPrincipalId) ? [] : adminVaultRoles): {
    name: guid(vault.id, adminPrincipalId, roleId)
    scope: vault
    properties: {
      roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleId)
      principalId: adminPrincipalId
      principalType: adminPrincipalType
    }
  }
]

resource adminStorage 'Microsoft.Authorization/roleAssignments@2022-04-01' = [
  for roleId in (empty(adminPrincipalId) ? [] : adminStorageRoles): {
    name: guid(storage.id, adminPrincipalId, roleId)
    scope: storage
    properties: {
      roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleId)
      principalId: adminPrincipalId
      principalType: adminPrincipalType
    }
  }
]
