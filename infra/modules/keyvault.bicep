// Key Vault for the CA: the CA key and the key-encryption key that wraps the RA key (both created by
// `azscep ca init`, never by this template, so that a redeployment can never replace or re-version them), and the
// static SCEP challenge (a secret the app reads through a Key Vault reference, so no secret is in app settings).
//
// RBAC authorization only (no access policies). Purge protection is on and cannot be turned off: a deleted vault
// and its keys stay recoverable for the retention period, and the vault name stays reserved for that long.

@description('Vault name (3-24 characters, globally unique).')
@minLength(3)
@maxLength(24)
param name string

@description('Azure region.')
param location string

@description('Tags for the vault.')
param tags object

@description('premium is required for HSM-protected keys (RSA-HSM, EC-HSM); standard holds software keys only.')
@allowed([
  'standard'
  'premium'
])
param skuName string

@description('Days a deleted vault, key or secret stays recoverable. Fixed at creation.')
@minValue(7)
@maxValue(90)
param softDeleteRetentionInDays int = 90

@description('Name of the secret holding the static SCEP challenge.')
param staticChallengeSecretName string

@description('The static SCEP challenge. Stored only as a Key Vault secret.')
@secure()
@minLength(16)
param staticChallenge string

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' = {
  name: name
  location: location
  tags: tags
  properties: {
    tenantId: subscription().tenantId
    sku: {
      family: 'A'
      name: skuName
    }
    enableRbacAuthorization: true
    enableSoftDelete: true
    softDeleteRetentionInDays: softDeleteRetentionInDays
    enablePurgeProtection: true
    enabledForDeployment: false
    enabledForDiskEncryption: false
    enabledForTemplateDeployment: false
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      defaultAction: 'Allow'
      bypass: 'AzureServices'
    }
  }
}

// No expiry or other time-derived attribute: properties stay identical across deployments.
resource staticChallengeSecret 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = {
  parent: vault
  name: staticChallengeSecretName
  properties: {
    value: staticChallenge
    contentType: 'text/plain; azscep static SCEP challenge'
    attributes: {
      enabled: true
    }
  }
}

output name string = vault.name
output id string = vault.id
output vaultUri string = vault.properties.vaultUri
// Versionless URI (functionapp.bicep appends the trailing slash of the reference): the app follows rotations of the secret (App Service refreshes references within 24 hours,
// or at once on restart).
output staticChallengeSecretUri string = staticChallengeSecret.properties.secretUri
