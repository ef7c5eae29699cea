// User-assigned managed identity of the function app. A user-assigned identity (rather than the site's
// system-assigned one) exists before the site, so role assignments and the deployment container can reference it
// in the same deployment, and it survives the app being deleted and recreated.

@description('Name of the identity.')
param name string

@description('Azure region.')
param location string

@description('Tags for the identity.')
param tags object

resource identity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: name
  location: location
  tags: tags
}

output id string = identity.id
output name string = identity.name
output clientId string = identity.properties.clientId
output principalId string = identity.properties.principalId
