// Event Grid -> the Event Grid hook (deployed in the storage account's resource group, from app/hooks.bicep): one
// event subscription on an existing storage account, BlobCreated only, in the Event Grid schema.
param name string
param storageAccountName string
@secure()
@description('https://<app>/api/hooks/eventgrid?code=<key of EventGridHook>: Event Grid keeps it encrypted and shows it only with --include-full-endpoint-url.')
param endpointUrl string
@description('e.g. /blobServices/default/containers/converted/blobs/ (Event Grid compares it case-insensitively). Empty: any.')
param subjectBeginsWith string = ''
@description('e.g. .arrAsset. Empty: any.')
param subjectEndsWith string = ''
// Event Grid retries for up to 24 hours and 30 attempts by default, and a retried BlobCreated starts a session when
// it is finally delivered: hours late, nobody may want it. 10 attempts within 60 minutes bound that; what is not
// delivered by then is dropped (the hook answers 503 only for its own passing trouble).
@minValue(1)
@maxValue(30)
param maxDeliveryAttempts int = 10
@minValue(1)
@maxValue(1440)
param eventTimeToLiveInMinutes int = 60

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

resource blobCreated 'Microsoft.EventGrid/eventSubscriptions@2022-06-15' = {
  name: name
  scope: storage
  properties: {
    destination: {
      endpointType: 'WebHook'
      properties: {
        endpointUrl: endpointUrl
        maxEventsPerBatch: 1
        preferredBatchSizeInKilobytes: 64
      }
    }
    filter: {
      includedEventTypes: [
        'Microsoft.Storage.BlobCreated'
      ]
      subjectBeginsWith: subjectBeginsWith
      subjectEndsWith: subjectEndsWith
      isSubjectCaseSensitive: false
    }
    eventDeliverySchema: 'EventGridSchema'
    retryPolicy: {
      maxDeliveryAttempts: maxDeliveryAttempts
      eventTimeToLiveInMinutes: eventTimeToLiveInMinutes
    }
  }
}

output id string = blobCreated.id
