"""Worker-side container machinery shared by tasks and parsing: Docker arguments, launch, reaping."""
