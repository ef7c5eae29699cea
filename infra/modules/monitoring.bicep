// Log Analytics workspace and workspace-based Application Insights. Local (instrumentation-key) authentication is
// disabled: the app sends telemetry with its managed identity (APPLICATIONINSIGHTS_AUTHENTICATION_STRING and the
// Monitoring Metrics Publisher role), so a leaked connection string cannot be used to inject telemetry.

@description('Name of the Log Analytics workspace.')
param logAnalyticsName string

@description('Name of the Application Insights component.')
param applicationInsightsName string

@description('Azure region.')
param location string

@description('Tags for both resources.')
param tags object

@description('Days to keep logs. Issuance and revocation traces are audit evidence; keep them as long as policy requires.')
@minValue(30)
@maxValue(730)
param retentionInDays int = 90

resource logAnalytics 'Microsoft.OperationalInsights/workspaces@2023-09-01' = {
  name: logAnalyticsName
  location: location
  tags: tags
  properties: {
    sku: {
      name: 'PerGB2018'
    }
    retentionInDays: retentionInDays
  }
}

resource appInsights 'Microsoft.Insights/components@2020-02-02' = {
  name: applicationInsightsName
  location: location
  tags: tags
  kind: 'web'
  properties: {
    Application_Type: 'web'
    WorkspaceResourceId: logAnalytics.id
    DisableLocalAuth: true
  }
}

output applicationInsightsName string = appInsights.name
output logAnalyticsName string = logAnalytics.name
output logAnalyticsCustomerId string = logAnalytics.properties.customerId

// The operator's workbook (Application Insights → Workbooks → "azscep operations"): one panel per query in
// infra/workbook/*.kql, the same queries docs/deployment.md section 8 lists (a test keeps them equal and checks
// their field names against the log lines the handler writes). The name is a GUID derived from the component, so
// re-deployments update the same workbook.
var workbookPanels = [
  {
    title: 'Enrollments per endpoint and outcome'
    query: loadTextContent('../workbook/enrollments.kql')
    visualization: 'table'
  }
  {
    title: 'Intune call failures'
    query: loadTextContent('../workbook/intune-failures.kql')
    visualization: 'table'
  }
  {
    title: 'Key Vault throttling'
    query: loadTextContent('../workbook/keyvault-throttling.kql')
    visualization: 'table'
  }
  {
    title: 'Revocation sync runs'
    query: loadTextContent('../workbook/revocation-sync.kql')
    visualization: 'table'
  }
  {
    title: 'Stale pending records'
    query: loadTextContent('../workbook/stale-pending.kql')
    visualization: 'table'
  }
  {
    title: 'Features disabled by a setting'
    query: loadTextContent('../workbook/disabled-features.kql')
    visualization: 'table'
  }
]

resource workbook 'Microsoft.Insights/workbooks@2023-06-01' = {
  name: guid(appInsights.id, 'azscep-operations-workbook')
  location: location
  tags: tags
  kind: 'shared'
  properties: {
    displayName: 'azscep operations'
    category: 'workbook'
    sourceId: appInsights.id
    serializedData: string({
      version: 'Notebook/1.0'
      items: concat([
        {
          type: 1
          name: 'intro'
          content: {
            json: '## azscep operations\nBuilt on the JSON log lines of the handler (traces). Queries and alerts: docs/deployment.md, section 8.'
          }
        }
      ], map(workbookPanels, p => {
        type: 3
        name: p.title
        content: {
          version: 'KqlItem/1.0'
          title: p.title
          query: p.query
          size: 0
          timeContext: {
            durationMs: 86400000
          }
          queryType: 0
          resourceType: 'microsoft.insights/components'
          visualization: p.visualization
        }
      }))
      fallbackResourceIds: [
        appInsights.id
      ]
    })
  }
}

output workbookId string = workbook.id
