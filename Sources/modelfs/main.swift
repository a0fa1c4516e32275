import CLI

ModelFSCommand.main()
