"""Tables, figures and files written from results: experiments, the study, CycleGAN, predictions, DICOM-SEG."""
