// Flex Consumption plan and the azscep function app (Functions custom handler, runtime `custom` 1.0).
//
// On Flex Consumption the runtime and the deployment source live in functionAppConfig; the legacy settings
// FUNCTIONS_WORKER_RUNTIME, FUNCTIONS_EXTENSION_VERSION, WEBSITE_RUN_FROM_PACKAGE, WEBSITE_CONTENT* and
// linuxFxVersion must not be set (the platform rejects or ignores them). Every app setting the service needs is
// below; internal/config/deploy_test.go compares them with config.Settings.

@description('Function app name (also the default host name <name>.azurewebsites.net).')
param name string

@description('Flex Consumption plan name.')
param planName string

@description('Azure region.')
param location string

@description('Tags for the plan and the app.')
param tags object

@description('azd service name from azure.yaml; azd finds the app by the azd-service-name tag.')
param serviceName string

@description('Resource ID of the user-assigned identity the app runs as.')
param identityId string

@description('Client ID of that identity (AZURE_CLIENT_ID, AzureWebJobsStorage__clientId).')
param identityClientId string

@description('Storage account for the host, the deployment container and the CA tables.')
param storageAccountName string

@description('Blob container holding the deployment package.')
param deploymentContainerName string

@description('Application Insights component.')
param applicationInsightsName string

@description('Key Vault URL (AZSCEP_KEYVAULT_URL).')
param keyVaultUrl string

@description('Versionless URI of the static challenge secret.')
param staticChallengeSecretUri string

@description('Table service endpoint (AZSCEP_TABLES_ENDPOINT).')
param tablesEndpoint string

@description('Prefix of the CA table names (AZSCEP_TABLES_PREFIX).')
param tablesPrefix string

@description('Name of the CA key in Key Vault (AZSCEP_CA_KEY_NAME).')
param caKeyName string

@description('Name of the key-encryption key that wraps the RA key (AZSCEP_KEK_NAME).')
param kekName string

@description('envelope: software RA key wrapped by Key Vault (1 Key Vault operation per enrollment); ca: the CA key decrypts and signs SCEP messages itself.')
@allowed([
  'envelope'
  'ca'
])
param raMode string

@description('Public base URL baked into issued certificates (AIA, CDP, OCSP). Empty = https://<default host name>. Set a custom domain here before issuing production certificates: the URLs in issued certificates cannot change later.')
param publicBaseUrl string = ''

@description('Entra tenant of Intune. Empty disables the intune SCEP endpoint and the revocation sync.')
param intuneTenantId string = ''

@description('More SCEP endpoint names, comma-separated, appended to the computed AZSCEP_SCEP_ENDPOINTS; their settings come through additionalAppSettings.')
param extraScepEndpoints string = ''

@description('Entra tenant whose tokens /api/csr and the admin API accept. Empty disables both.')
param apiTenantId string = ''

@description('Comma-separated audiences of the API app registration (client ID and App ID URI).')
param apiAudiences string = ''

@description('Log level of the handler.')
@allowed([
  'debug'
  'info'
  'warn'
  'error'
])
param logLevel string = 'info'

@description('Upper bound of instances Flex Consumption scales out to.')
@minValue(40)
@maxValue(1000)
param maximumInstanceCount int = 100

@description('Instance memory size.')
@allowed([
  512
  2048
  4096
])
param instanceMemoryMB int = 2048

@description('Always-ready instances for the HTTP functions (billed while idle; removes cold starts). 0 = scale to zero.')
@minValue(0)
param alwaysReadyInstances int = 0

@description('Extra app settings, e.g. AZSCEP_SCEP_<NAME> / AZSCEP_PROFILE_<NAME> for more endpoints (listed in extraScepEndpoints) and profiles. They win over the defaults below.')
param additionalAppSettings object = {}

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

resource appInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: applicationInsightsName
}

// Flex scales HTTP functions as one group named "http"; keep that group warm when asked to.
var alwaysReadyHttp = [
  {
    name: 'http'
    instanceCount: alwaysReadyInstances
  }
]

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
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
  name: name
  location: location
  tags: union(tags, {
    'azd-service-name': serviceName
  })
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
    clientCertEnabled: false
    keyVaultReferenceIdentity: identityId
    siteConfig: {
      minTlsVersion: '1.2'
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
        maximumInstanceCount: maximumInstanceCount
        instanceMemoryMB: instanceMemoryMB
        alwaysReady: alwaysReadyInstances > 0 ? alwaysReadyHttp : []
      }
      runtime: {
        name: 'custom'
        version: '1.0'
      }
    }
  }
}

// azd deploys with an Entra token; publishing with basic (FTP/SCM) credentials is switched off.
resource ftpPublishing 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: site
  name: 'ftp'
  location: location
  properties: {
    allow: false
  }
}

resource scmPublishing 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: site
  name: 'scm'
  location: location
  properties: {
    allow: false
  }
}

var baseUrl = empty(publicBaseUrl) ? 'https://${site.properties.defaultHostName}' : publicBaseUrl

// The static endpoint always exists (its challenge is the Key Vault secret); the intune endpoint only once an
// Intune tenant is configured, because config.Load refuses an intune endpoint without one. The operator's own
// endpoints follow: config reads AZSCEP_SCEP_<NAME> only for the endpoints listed here.
var builtInScepEndpoints = empty(intuneTenantId) ? 'static' : 'static,intune'
var scepEndpoints = empty(extraScepEndpoints) ? builtInScepEndpoints : '${builtInScepEndpoints},${extraScepEndpoints}'

var appSettings = {
  // Functions host storage through the managed identity: no connection string, no account key.
  AzureWebJobsStorage__credential: 'managedidentity'
  AzureWebJobsStorage__clientId: identityClientId
  AzureWebJobsStorage__blobServiceUri: storage.properties.primaryEndpoints.blob
  AzureWebJobsStorage__queueServiceUri: storage.properties.primaryEndpoints.queue
  AzureWebJobsStorage__tableServiceUri: storage.properties.primaryEndpoints.table
  // Telemetry with Entra authentication (local auth is disabled on the component).
  APPLICATIONINSIGHTS_CONNECTION_STRING: appInsights.properties.ConnectionString
  APPLICATIONINSIGHTS_AUTHENTICATION_STRING: 'ClientId=${identityClientId};Authorization=AAD'
  // azscep (config.Settings).
  AZURE_CLIENT_ID: identityClientId
  AZSCEP_MODE: 'azure'
  AZSCEP_BASE_URL: baseUrl
  AZSCEP_LOG_LEVEL: logLevel
  AZSCEP_TABLES_ENDPOINT: tablesEndpoint
  AZSCEP_TABLES_PREFIX: tablesPrefix
  AZSCEP_KEYVAULT_URL: keyVaultUrl
  AZSCEP_CA_KEY_NAME: caKeyName
  AZSCEP_KEK_NAME: kekName
  AZSCEP_RA_MODE: raMode
  AZSCEP_SCEP_ENDPOINTS: scepEndpoints
  // The versionless secret URI (no version segment) ends with a slash in a Key Vault reference.
  AZSCEP_SCEP_STATIC_SECRET: '@Microsoft.KeyVault(SecretUri=${staticChallengeSecretUri}/)'
  AZSCEP_INTUNE_TENANT_ID: intuneTenantId
  AZSCEP_API_TENANT_ID: apiTenantId
  AZSCEP_API_AUDIENCES: apiAudiences
  // Read by the Functions host: functions/revocation-sync/function.json has "schedule": "%REVOCATION_SCHEDULE%".
  REVOCATION_SCHEDULE: '0 0 * * * *'
}

resource settings 'Microsoft.Web/sites/config@2024-04-01' = {
  parent: site
  name: 'appsettings'
  properties: union(appSettings, additionalAppSettings)
}

output name string = site.name
output defaultHostName string = site.properties.defaultHostName
output baseUrl string = baseUrl
