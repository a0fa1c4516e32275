import CLI

await ModelFSCommand.main()
