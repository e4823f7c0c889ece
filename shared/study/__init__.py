"""Study protocols for browser play (gymrec-serve): the study file and pseudonymous participants."""
