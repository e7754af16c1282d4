import BulkheadCommands

BulkheadMain.main()
