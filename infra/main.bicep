// azscep on Azure: Flex Consumption function app (custom handler), user-assigned managed identity, storage
// (host + deployment package + CA tables, no shared keys), Key Vault (RBAC, purge protection), Log Analytics +
// Application Insights, and least-privilege role assignments. Deployed by `azd up`; the postprovision hook
// (infra/scripts/postprovision.sh) then runs the idempotent `azscep ca init` with the admin's own credential.
//
// Plain resource declarations only (no registry modules), so nothing but the Bicep CLI is needed to build it.
// Offline structural checks: internal/config/deploy_test.go. Full validation: `az bicep build` and
// `azd provision --preview` on a machine with Azure access (docs/deployment.md).
targetScope = 'subscription'

@minLength(1)
@maxLength(64)
@description('azd environment name; names the resource group and seeds the unique resource names.')
param environmentName string

@minLength(1)
@description('Region for every resource. Flex Consumption is not in every region: az functionapp list-flexconsumption-locations.')
@metadata({
  azd: {
    type: 'location'
  }
})
param location string

@description('Object ID of the admin running azd (AZURE_PRINCIPAL_ID). Gets Key Vault Crypto Officer and Secrets Officer and Storage Table Data Contributor so that `azscep ca init` can run. Empty skips these assignments.')
param principalId string = ''

@description('Type of principalId: User for an interactive admin, ServicePrincipal for a pipeline.')
@allowed([
  'User'
  'ServicePrincipal'
  'Group'
])
param principalType string = 'User'

@description('Resource group name; empty = rg-<environmentName>.')
param resourceGroupName string = ''

@description('Key Vault name; empty = a unique name. Set it to reuse (after `az keyvault recover`) a vault of an earlier environment.')
param keyVaultName string = ''

@description('CA key type for `azscep ca init`. HSM types make the vault premium; software types keep it standard.')
@allowed([
  'RSA-HSM'
  'EC-HSM'
  'RSA'
  'EC'
])
param caKeyType string = 'RSA-HSM'

@description('SCEP RA mode: envelope (software RA key wrapped by Key Vault) or ca (the CA key decrypts and signs).')
@allowed([
  'envelope'
  'ca'
])
param raMode string = 'envelope'

@description('Name of the CA key in Key Vault.')
@minLength(1)
@maxLength(127)
param caKeyName string = 'azscep-ca'

@description('Name of the Key Vault key that wraps the RA key.')
@minLength(1)
@maxLength(127)
param kekName string = 'azscep-kek'

@description('Prefix of the CA table names: letters and digits, starting with a letter (config.Load checks it).')
@minLength(1)
@maxLength(50)
param tablesPrefix string = 'azscep'

@description('Static SCEP challenge (endpoint "static"). Generated once by azd and kept in the azd environment unless AZSCEP_STATIC_CHALLENGE is set; stored only as a Key Vault secret.')
@secure()
@minLength(16)
@metadata({
  azd: {
    type: 'generate'
    config: {
      length: 32
      noSpecial: true
    }
  }
})
param staticChallenge string

@description('Entra tenant of Intune; empty disables the intune SCEP endpoint and the revocation sync. Run infra/scripts/grant-intune.sh first.')
param intuneTenantId string = ''

@description('Entra tenant for /api/csr and the admin API; empty disables both. See infra/scripts/create-api-app.sh.')
param apiTenantId string = ''

@description('Comma-separated audiences of the API app registration: <client id>,api://<client id>.')
param apiAudiences string = ''

@description('Public base URL (custom domain) for AIA/CDP/OCSP URLs in certificates; empty = https://<app>.azurewebsites.net.')
param publicBaseUrl string = ''

@description('Log level of the handler.')
@allowed([
  'debug'
  'info'
  'warn'
  'error'
])
param logLevel string = 'info'

@description('Storage replication; ZRS or GZRS recommended for production where available.')
@allowed([
  'Standard_LRS'
  'Standard_ZRS'
  'Standard_GRS'
  'Standard_GZRS'
  'Standard_RAGRS'
  'Standard_RAGZRS'
])
param storageSkuName string = 'Standard_LRS'

@description('Soft-delete retention of the vault (days). Fixed when the vault is created.')
@minValue(7)
@maxValue(90)
param keyVaultSoftDeleteRetentionInDays int = 90

@description('Log and telemetry retention (days).')
@minValue(30)
@maxValue(730)
param logRetentionInDays int = 90

@description('Upper bound of Flex Consumption instances.')
@minValue(40)
@maxValue(1000)
param maximumInstanceCount int = 100

@description('Flex Consumption instance memory.')
@allowed([
  512
  2048
  4096
])
param instanceMemoryMB int = 2048

@description('Always-ready HTTP instances (0 = scale to zero).')
@minValue(0)
param alwaysReadyInstances int = 0

@description('More SCEP endpoints (AZSCEP_EXTRA_SCEP_ENDPOINTS): comma-separated alphanumeric names, appended to the computed AZSCEP_SCEP_ENDPOINTS (static, plus intune with an Intune tenant). Each is configured by AZSCEP_SCEP_<NAME> and AZSCEP_SCEP_<NAME>_SECRET in additionalAppSettings.')
param extraScepEndpoints string = ''

@description('Extra app settings (the settings of more SCEP endpoints, profiles, overrides such as REVOCATION_SCHEDULE). Do not set AZSCEP_SCEP_ENDPOINTS here: it would replace the computed list; use extraScepEndpoints.')
param additionalAppSettings object = {}

// The azd service name in azure.yaml; the app carries it in its azd-service-name tag.
var serviceName = 'azscep'
var resourceToken = toLower(uniqueString(subscription().id, environmentName, location))
var tags = {
  'azd-env-name': environmentName
}
var functionAppName = 'func-${resourceToken}'
var deploymentContainerName = 'app-package-${take(functionAppName, 32)}-${take(resourceToken, 7)}'
var staticChallengeSecretName = 'azscep-scep-static-challenge'
// Without its trailing slash, which would double the slash of every path joined to it (https://ca.contoso.com//api/…)
// in the app setting AZSCEP_BASE_URL and in the URL outputs below (both come from the module's baseUrl).
var base = endsWith(publicBaseUrl, '/') ? substring(publicBaseUrl, 0, length(publicBaseUrl) - 1) : publicBaseUrl
// Must match the table suffixes of internal/store/tables (checked by internal/config/deploy_test.go).
var tableSuffixes = [
  'certs'
  'revoked'
  'meta'
  'revreq'
  'runs'
]

resource rg 'Microsoft.Resources/resourceGroups@2022-09-01' = {
  name: !empty(resourceGroupName) ? resourceGroupName : 'rg-${environmentName}'
  location: location
  tags: tags
}

module identity 'modules/identity.bicep' = {
  name: 'identity'
  scope: rg
  params: {
    name: 'id-${resourceToken}'
    location: location
    tags: tags
  }
}

module monitoring 'modules/monitoring.bicep' = {
  name: 'monitoring'
  scope: rg
  params: {
    logAnalyticsName: 'log-${resourceToken}'
    applicationInsightsName: 'appi-${resourceToken}'
    location: location
    tags: tags
    retentionInDays: logRetentionInDays
  }
}

module storage 'modules/storage.bicep' = {
  name: 'storage'
  scope: rg
  params: {
    name: 'st${resourceToken}'
    location: location
    tags: tags
    skuName: storageSkuName
    deploymentContainerName: deploymentContainerName
    tableNames: [for suffix in tableSuffixes: '${tablesPrefix}${suffix}']
  }
}

module keyVault 'modules/keyvault.bicep' = {
  name: 'keyvault'
  scope: rg
  params: {
    name: !empty(keyVaultName) ? keyVaultName : 'kv-${resourceToken}'
    location: location
    tags: tags
    skuName: endsWith(caKeyType, '-HSM') ? 'premium' : 'standard'
    softDeleteRetentionInDays: keyVaultSoftDeleteRetentionInDays
    staticChallengeSecretName: staticChallengeSecretName
    staticChallenge: staticChallenge
  }
}

module roles 'modules/roles.bicep' = {
  name: 'roles'
  scope: rg
  params: {
    storageAccountName: storage.outputs.name
    keyVaultName: keyVault.outputs.name
    applicationInsightsName: monitoring.outputs.applicationInsightsName
    identityPrincipalId: identity.outputs.principalId
    adminPrincipalId: principalId
    adminPrincipalType: principalType
  }
}

module functionApp 'modules/functionapp.bicep' = {
  name: 'functionapp'
  scope: rg
  // The app starts with identity-based storage and Key Vault references: let the roles exist first.
  dependsOn: [
    roles
  ]
  params: {
    name: functionAppName
    planName: 'plan-${resourceToken}'
    location: location
    tags: tags
    serviceName: serviceName
    identityId: identity.outputs.id
    identityClientId: identity.outputs.clientId
    storageAccountName: storage.outputs.name
    deploymentContainerName: storage.outputs.deploymentContainerName
    applicationInsightsName: monitoring.outputs.applicationInsightsName
    keyVaultUrl: keyVault.outputs.vaultUri
    staticChallengeSecretUri: keyVault.outputs.staticChallengeSecretUri
    tablesEndpoint: storage.outputs.tableEndpoint
    tablesPrefix: tablesPrefix
    caKeyName: caKeyName
    kekName: kekName
    raMode: raMode
    publicBaseUrl: base
    intuneTenantId: intuneTenantId
    extraScepEndpoints: extraScepEndpoints
    apiTenantId: apiTenantId
    apiAudiences: apiAudiences
    logLevel: logLevel
    maximumInstanceCount: maximumInstanceCount
    instanceMemoryMB: instanceMemoryMB
    alwaysReadyInstances: alwaysReadyInstances
    additionalAppSettings: additionalAppSettings
  }
}

// Outputs become azd environment values. The AZSCEP_* ones are exactly the settings the admin CLI needs
// (infra/scripts/azscep-admin.sh); AZURE_CLIENT_ID is deliberately not an output, so that admin commands use the
// admin's own credential rather than trying the app's managed identity.
output AZURE_LOCATION string = location
output AZURE_TENANT_ID string = tenant().tenantId
output AZURE_RESOURCE_GROUP string = rg.name
output AZURE_FUNCTION_APP_NAME string = functionApp.outputs.name
output AZURE_KEY_VAULT_NAME string = keyVault.outputs.name
output AZURE_STORAGE_ACCOUNT_NAME string = storage.outputs.name
output AZURE_APPLICATION_INSIGHTS_NAME string = monitoring.outputs.applicationInsightsName
output AZURE_LOG_ANALYTICS_WORKSPACE_ID string = monitoring.outputs.logAnalyticsCustomerId
output AZURE_MANAGED_IDENTITY_NAME string = identity.outputs.name
output AZURE_MANAGED_IDENTITY_CLIENT_ID string = identity.outputs.clientId
output AZURE_MANAGED_IDENTITY_PRINCIPAL_ID string = identity.outputs.principalId
output AZSCEP_BASE_URL string = functionApp.outputs.baseUrl
output AZSCEP_KEYVAULT_URL string = keyVault.outputs.vaultUri
output AZSCEP_TABLES_ENDPOINT string = storage.outputs.tableEndpoint
output AZSCEP_TABLES_PREFIX string = tablesPrefix
output AZSCEP_CA_KEY_NAME string = caKeyName
output AZSCEP_KEK_NAME string = kekName
output AZSCEP_RA_MODE string = raMode
output AZSCEP_CA_KEY_TYPE string = caKeyType
output AZSCEP_STATIC_CHALLENGE_SECRET_NAME string = staticChallengeSecretName
output SCEP_URL_STATIC string = '${functionApp.outputs.baseUrl}/api/scep/static'
output SCEP_URL_INTUNE string = '${functionApp.outputs.baseUrl}/api/scep/intune'
output CSR_URL string = '${functionApp.outputs.baseUrl}/api/csr'
output CA_CERT_URL string = '${functionApp.outputs.baseUrl}/api/ca'
output CRL_URL string = '${functionApp.outputs.baseUrl}/api/crl'
output OCSP_URL string = '${functionApp.outputs.baseUrl}/api/ocsp'
output HEALTH_URL string = '${functionApp.outputs.baseUrl}/api/health'
